/**
 * The pages the gateway answers with when the protocol itself refuses (bad request, sign-in
 * needed, origin unreachable, destination walled off, internal error), and the frame every page
 * shares. In proxy/ because the protocol must be able to answer without the filter; the filter's
 * own pages (block page, not-ready page, thanks) are in filter/blockpage.ts and use this frame.
 * Everything from the request is escaped.
 */

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}

const style = `
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;background:#f4f5f7;color:#1b1f24;margin:0;line-height:1.5}
main{max-width:40rem;margin:2rem auto;background:#fff;border-radius:8px;padding:2rem;box-shadow:0 1px 4px rgba(0,0,0,.15)}
h1{font-size:1.6rem;margin-top:0;color:#8a1c1c}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
form{margin-top:1.2rem;padding-top:1rem;border-top:1px solid #ddd}
label{display:block;font-weight:600;margin-bottom:.3rem}
textarea{width:100%;box-sizing:border-box;min-height:4rem;font:inherit}
button{font:inherit;font-weight:600;padding:.6rem 1rem;border-radius:6px;border:2px solid #1d4ed8;background:#1d4ed8;color:#fff;cursor:pointer;margin-top:.5rem}
button.secondary{background:#fff;color:#1d4ed8}
button:focus{outline:3px solid #f59e0b;outline-offset:2px}
.small{font-size:.9rem;color:#4b5563}
`;

export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${escapeHtml(title)}</title><style>${style}</style></head>
<body><main>${body}</main></body></html>
`;
}

export function renderErrorPage(p: { status: number; title: string; message: string; code: string; detail?: string }): string {
  return page(p.title, `
<h1>${escapeHtml(p.title)}</h1>
<p>${escapeHtml(p.message)}</p>
${p.detail ? `<p class="small">${escapeHtml(p.detail)}</p>` : ''}
<p class="small">Error code: ${escapeHtml(p.code)} (HTTP ${p.status})</p>
`);
}
