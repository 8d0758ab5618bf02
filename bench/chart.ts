/**
 * A hand-written SVG chart: throughput against message size, both axes logarithmic, one
 * line per transport. No dependencies.
 *
 * @module
 */

import { formatSize, type Kind } from "./common.ts";
import type { Results } from "./results_types.ts";
import { TRANSPORTS } from "./transports.ts";

/** Line colour and dash of each transport (library lines solid, the rest dashed). */
const STYLE: Record<string, { color: string; dash?: string }> = {
  "shmq-get-async": { color: "#1f77b4" },
  "shmq-get-sync": { color: "#2ca02c" },
  "shmq-get-reuse": { color: "#bcbd22" },
  "shmq-get-pooled-sync": { color: "#7f7f7f" },
  "shmq-get-pooled-async": { color: "#aec7e8" },
  "shmq-putmany-pooled-sync": { color: "#98df8a" },
  "shmq-borrow": { color: "#d62728" },
  "shmq-zerocopy": { color: "#9467bd" },
  "pipe": { color: "#ff7f0e", dash: "6 4" },
  "pipe-batched": { color: "#ffbb78", dash: "6 4" },
  "postmessage-clone": { color: "#8c564b", dash: "6 4" },
  "postmessage-transfer": { color: "#e377c2", dash: "2 3" },
  "segment": { color: "#17becf", dash: "6 4" },
  "memcpy": { color: "#444444", dash: "1 3" },
};

function esc(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

/** The SVG text of the chart for one payload kind. */
export function renderChart(results: Results, kind: Kind): string {
  const W = 960, H = 600;
  const left = 80, right = 250, top = 56, bottom = 70;
  const pw = W - left - right, ph = H - top - bottom;
  const rows = results.throughput.filter((r) =>
    r.status === "ok" && r.gbps !== undefined && r.gbps > 0 &&
    (r.kind === kind || r.transport === "memcpy")
  );
  const sizes = [...new Set(rows.map((r) => r.size))].sort((a, b) => a - b);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  );
  const title = kind === "bytes"
    ? "Throughput, Uint8Array messages"
    : "Throughput, structured messages {idx, source, data: Float32Array}";
  out.push(`<text x="${left}" y="28" font-size="16" font-weight="bold">${esc(title)}</text>`);
  const m = results.machine as Record<string, unknown>;
  out.push(
    `<text x="${left}" y="46" fill="#555">${
      esc(
        "one way, 2 processes (postMessage: 2 threads; memcpy: 1); " +
          `${m.cpu}, ${m.cores} cores, Deno ${m.deno}, ${results.startedAt.slice(0, 10)}`,
      )
    }</text>`,
  );
  if (rows.length === 0 || sizes.length === 0) {
    out.push(`<text x="${left + 20}" y="${top + 40}">no results</text></svg>`);
    return out.join("\n") + "\n";
  }
  const xMin = Math.log10(sizes[0]), xMax = Math.log10(sizes[sizes.length - 1]);
  const values = rows.map((r) => r.gbps!);
  const yMin = Math.floor(Math.log10(Math.min(...values)));
  const yMax = Math.ceil(Math.log10(Math.max(...values)));
  const xs = (size: number) =>
    left + (xMax === xMin ? pw / 2 : ((Math.log10(size) - xMin) / (xMax - xMin)) * pw);
  const ys = (gbps: number) =>
    top + ph - ((Math.log10(gbps) - yMin) / Math.max(1, yMax - yMin)) * ph;

  // Grid and axes.
  out.push(`<g stroke="#e3e3e3" stroke-width="1">`);
  for (let d = yMin; d <= yMax; d++) {
    out.push(
      `<line x1="${left}" x2="${left + pw}" y1="${ys(10 ** d).toFixed(1)}" y2="${
        ys(10 ** d).toFixed(1)
      }"/>`,
    );
  }
  for (const s of sizes) {
    out.push(`<line x1="${xs(s)}" x2="${xs(s)}" y1="${top}" y2="${top + ph}"/>`);
  }
  out.push(`</g>`);
  out.push(
    `<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
  );
  for (let d = yMin; d <= yMax; d++) {
    const v = 10 ** d;
    const label = v >= 1 ? String(v) : v.toPrecision(1);
    out.push(
      `<text x="${left - 8}" y="${(ys(v) + 4).toFixed(1)}" text-anchor="end">${label}</text>`,
    );
  }
  for (const s of sizes) {
    out.push(
      `<text x="${xs(s).toFixed(1)}" y="${top + ph + 18}" text-anchor="middle">${
        esc(formatSize(s))
      }</text>`,
    );
  }
  out.push(
    `<text x="${left + pw / 2}" y="${H - 24}" text-anchor="middle">message size (log)</text>`,
    `<text transform="translate(22 ${top + ph / 2}) rotate(-90)" text-anchor="middle">` +
      `throughput, GB/s (log)</text>`,
  );

  // One line per transport.
  let legendY = top + 10;
  for (const t of TRANSPORTS) {
    const points = rows.filter((r) => r.transport === t.id).sort((a, b) => a.size - b.size);
    if (points.length === 0) continue;
    const style = STYLE[t.id] ?? { color: "#000" };
    const dash = style.dash ? ` stroke-dasharray="${style.dash}"` : "";
    const width = t.library ? 2.5 : 1.8;
    const d = points.map((p, i) =>
      `${i ? "L" : "M"}${xs(p.size).toFixed(1)},${ys(p.gbps!).toFixed(1)}`
    )
      .join(" ");
    out.push(
      `<path d="${d}" fill="none" stroke="${style.color}" stroke-width="${width}"${dash}/>`,
    );
    for (const p of points) {
      out.push(
        `<circle cx="${xs(p.size).toFixed(1)}" cy="${ys(p.gbps!).toFixed(1)}" r="3" ` +
          `fill="${style.color}"><title>${
            esc(`${t.label}, ${formatSize(p.size)}: ${p.gbps!.toPrecision(3)} GB/s`)
          }</title></circle>`,
      );
    }
    const lx = left + pw + 16;
    out.push(
      `<line x1="${lx}" x2="${lx + 28}" y1="${legendY}" y2="${legendY}" stroke="${style.color}" ` +
        `stroke-width="${width}"${dash}/>`,
      `<text x="${lx + 34}" y="${legendY + 4}">${esc(t.label)}</text>`,
    );
    legendY += 20;
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
