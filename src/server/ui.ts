/**
 * A first, read-only overview page at `/`: nodes, jobs and running allocations, refreshed every two
 * seconds from the same API the CLI uses. It authenticates like the CLI, with a token the person
 * pastes (kept in the tab's sessionStorage, sent as a bearer header): never with ambient
 * credentials such as cookies, which another site could make the browser send.
 */
export function uiPage(version: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>unum</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1d2330}
h1{font-size:1.4rem;margin:0 0 .2rem} h2{font-size:1.05rem;margin:1.6rem 0 .4rem}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #e3e6ec}
th{font-weight:600;color:#566} .muted{color:#778} code{font-size:.92em}
.running,.ready,.complete{color:#17803d} .pending{color:#a66b00} .failed,.down,.dead,.lost{color:#b42318}
</style></head><body>
<h1>unum</h1><div class="muted">version ${version} &middot; <span id="updated">loading…</span> &middot; API: <a href="/v1/openapi.json">/v1/openapi.json</a></div>
<form id="login" hidden><p>This cluster needs a token. On the machine of <code>unum up</code> it is in
<code>management-token</code> in its data dir; others get one from <code>unum acl token create</code>.</p>
<input id="token" type="password" size="60" placeholder="unum-token-…" autocomplete="off"> <button>Use it</button></form>
<h2>Nodes</h2><table id="nodes"></table>
<h2>Jobs</h2><table id="jobs"></table>
<h2>Running allocations</h2><table id="allocs"></table>
<script>
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function table(el, head, rows) {
  el.innerHTML = '<tr>' + head.map((h) => '<th>' + esc(h) + '</th>').join('') + '</tr>' +
    (rows.length ? rows.map((r) => '<tr>' + r.map((c) => '<td' + (c && c.cls ? ' class="' + esc(c.cls) + '"' : '') + '>' + esc(c && c.text !== undefined ? c.text : c) + '</td>').join('') + '</tr>').join('')
      : '<tr><td class="muted" colspan="' + head.length + '">none</td></tr>');
}
const login = document.getElementById('login');
login.addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem('unum-token', document.getElementById('token').value.trim());
  login.hidden = true;
  refresh();
});
async function api(u) {
  const token = sessionStorage.getItem('unum-token');
  const r = await fetch(u, { headers: token ? { authorization: 'Bearer ' + token } : {} });
  if (r.status === 401 || r.status === 403) { login.hidden = false; throw new Error('a token with read rights is needed'); }
  return r.json();
}
async function refresh() {
  try {
    const [nodes, jobs, allocs] = await Promise.all(['/v1/nodes', '/v1/jobs?namespace=*', '/v1/allocations'].map(api));
    table(document.getElementById('nodes'), ['Name', 'Status', 'Eligibility', 'CPU (millicores)', 'Memory (MiB)', 'Address'],
      nodes.items.map((n) => [n.name, {text: n.status, cls: n.status}, n.drain ? 'draining' : n.eligibility, n.resources.cpu, n.resources.memory, n.address]));
    table(document.getElementById('jobs'), ['Job', 'Namespace', 'Type', 'Status', 'Running / desired', 'Version'],
      jobs.items.map((j) => [j.job.id, j.job.namespace, j.job.spec.type, {text: j.job.status, cls: j.job.status}, j.summary.running + ' / ' + j.summary.desired, j.job.version]));
    table(document.getElementById('allocs'), ['ID', 'Name', 'Node', 'Status', 'Ports'],
      allocs.items.map((a) => [a.id.slice(0, 8), a.name, (nodes.items.find((n) => n.id === a.nodeId) || {}).name || a.nodeId.slice(0, 8), {text: a.clientStatus, cls: a.clientStatus}, a.resources.ports.map((p) => p.name + '=' + p.value).join(' ')]));
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById('updated').textContent = 'cannot reach the API: ' + e.message;
  }
}
refresh(); setInterval(refresh, 2000);
</script></body></html>`;
}
