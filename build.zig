//! Builds the shmq native core (ffi/shmq.c).
//!
//! `zig build` does two things:
//!  - builds the library for the host (or -Dtarget) with -Doptimize into zig-out/lib/libshmq.so;
//!  - cross-builds the shipped binaries, always ReleaseSmall and stripped, for
//!    x86_64-linux-gnu and aarch64-linux-gnu, and copies them into the source tree at
//!    ffi/lib/<arch>-linux/libshmq.so (the path the loader looks for).
//! The shipped binaries are reproducible: the same Zig and sources give the same bytes,
//! whatever directory the checkout lives in (CI checks this).
const std = @import("std");

const c_flags = [_][]const u8{
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-fvisibility=hidden",
};

/// The shipped targets: the arch names match Deno.build.arch.
const shipped = [_]struct { arch: []const u8, query: []const u8 }{
    .{ .arch = "x86_64", .query = "x86_64-linux-gnu" },
    .{ .arch = "aarch64", .query = "aarch64-linux-gnu" },
};

fn addCore(
    b: *std.Build,
    target: std.Build.ResolvedTarget,
    optimize: std.builtin.OptimizeMode,
    strip: ?bool,
) *std.Build.Step.Compile {
    const mod = b.createModule(.{
        .target = target,
        .optimize = optimize,
        .link_libc = true,
        .strip = strip,
    });
    mod.addCSourceFiles(.{ .files = &.{"ffi/shmq.c"}, .flags = &c_flags });
    mod.addIncludePath(b.path("ffi"));
    return b.addLibrary(.{
        .linkage = .dynamic,
        .name = "shmq",
        .root_module = mod,
    });
}

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});

    // Host (or -Dtarget) build into zig-out/lib.
    const host = addCore(b, target, optimize, null);
    b.installArtifact(host);

    // Shipped cross builds, copied into the package.
    const update = b.addUpdateSourceFiles();
    for (shipped) |s| {
        const query = std.Target.Query.parse(.{ .arch_os_abi = s.query }) catch
            @panic("bad target query");
        const lib = addCore(b, b.resolveTargetQuery(query), .ReleaseSmall, true);
        update.addCopyFileToSource(
            lib.getEmittedBin(),
            b.fmt("ffi/lib/{s}-linux/libshmq.so", .{s.arch}),
        );
    }
    const ship = b.step("ship", "Cross-build the shipped binaries into ffi/lib/");
    ship.dependOn(&update.step);
    b.getInstallStep().dependOn(&update.step);
}
