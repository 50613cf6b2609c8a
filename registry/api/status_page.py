"""The status page a person reads at a glance: HTML, no JavaScript, refreshes itself."""

from __future__ import annotations

from html import escape

from registry.service.mirrors import MirrorView
from registry.service.peers import PeerView
from registry.service.status import Status
from registry.wire import iso_ms

REFRESH_SECONDS = 10


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def _index(s: Status) -> str:
    if not s.index_behind_entries:
        return "current"
    return (
        f"{s.index_behind_entries} changes behind ({_duration(s.index_behind_seconds)}); "
        "search still finds them"
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m {secs}s"


def _scrub(s: Status) -> str:
    scrub = s.scrub
    last = iso_ms(scrub.last_pass_ms) if scrub.last_pass_ms else "never"
    running = f"; running now ({escape(scrub.running)})" if scrub.running else ""
    held = f'<b class="held">{scrub.quarantined}</b>' if scrub.quarantined else "none"
    return (
        f"last complete pass {last}{running}; {scrub.totals['checked']} blobs checked, "
        f"{scrub.totals['repaired']} repaired, {held} quarantined (never served)"
    )


def _rows(cells: list[list[str]]) -> str:
    return "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells)


def _history(s: Status) -> str:
    """A restore, and the peers that keep what it lost here (a red box while there are)."""
    if not s.restored_ms and not s.lost_history:
        return ""
    restored = (
        f"<p>This node was restored from a backup on {iso_ms(s.restored_ms)}.</p>"
        if s.restored_ms
        else ""
    )
    rows = "".join(
        f"<li>node <b>{escape(h.node)}</b> ({escape(h.url or 'URL not told')}) keeps "
        f"{h.entries} entries of this node's history before the restore: "
        f"<code>modelyard recover --from {escape(h.url or '<its URL>')}</code></li>"
        for h in s.lost_history
    )
    lost = f'<ul class="diverged">{rows}</ul>' if rows else ""
    return f'<h2>History</h2><div id="history">{restored}{lost}</div>'


def _collisions(s: Status) -> str:
    """Repos of peers left out because a repo of the same id is held here."""
    if not s.collisions:
        return ""
    rows = "".join(
        f"<li><b>{escape(c.repo)}</b> of node {escape(c.home)} (seen {iso_ms(c.since_ms)})</li>"
        for c in s.collisions
    )
    return (
        '<h2>Repo collisions</h2><div id="collisions"><p>Peers have repos with the ids of '
        "repos held here for another home; those held here stay as they are.</p>"
        f'<ul class="degraded">{rows}</ul></div>'
    )


def _diverged(p: PeerView) -> str:
    if not p.diverged_ms:
        return ""
    kept = f"; {p.set_aside} entries of its old history kept here" if p.set_aside else ""
    return f"<br><small>history diverged {iso_ms(p.diverged_ms)}{kept}</small>"


def _rolled_back(m: MirrorView) -> str:
    """The newest roll-back of a mirror's refs (a restore here), and where the mirror keeps
    what it pointed at."""
    if not m.recent_rollbacks:
        return ""
    r = m.recent_rollbacks[0]
    more = f" (+{m.rollbacks - 1} more, /v1/mirrors/{escape(m.name)})" if m.rollbacks > 1 else ""
    return (
        f"<br><small>rolled back {escape(r.repo)} {escape(r.ref)} past lost commit "
        f"{r.lost_commit[:12]} at {iso_ms(r.at_ms)}; kept as {escape(r.kept_as)}{more}</small>"
    )


def _disk(s: Status) -> str:
    """The data dir's disk: free space, and in red when uploads are refused."""
    d = s.disk
    free = f"{_size(d.free)} free of {_size(d.total)} ({_size(d.reserve)} kept for the database)"
    if d.state == "ok":
        return free
    css = "degraded" if d.state == "low" else "down"
    return f'<b class="{css}">{d.state}</b>: {escape(d.problem or "")}<br><small>{free}</small>'


def render(s: Status) -> str:
    peers = (
        _rows(
            [
                [
                    escape(p.id),
                    escape(p.url),
                    f'<b class="{p.state}">{p.state}</b>' + _diverged(p),
                    f"{p.lag_entries}",
                    f"{p.lag_seconds:.0f} s",
                    iso_ms(p.last_success_ms) if p.last_success_ms else "never",
                    escape(p.last_error or ""),
                ]
                for p in s.peers
            ]
        )
        or '<tr><td colspan="7">no peers configured</td></tr>'
    )
    mirrors = (
        _rows(
            [
                [
                    escape(m.name),
                    escape(m.kind),
                    f'<b class="{"down" if m.state == "failing" else "up"}">{m.state}</b>'
                    + _rolled_back(m),
                    f"{m.backlog}",
                    iso_ms(m.last_success_ms) if m.last_success_ms else "never",
                    escape(m.last_error or ""),
                ]
                for m in s.mirrors
            ]
        )
        or '<tr><td colspan="6">no mirrors configured</td></tr>'
    )
    recent = (
        _rows(
            [
                [
                    escape(r.repo),
                    escape(r.title),
                    escape(r.author),
                    r.commit[:10],
                    iso_ms(r.created_ms),
                ]
                for r in s.recent
            ]
        )
        or '<tr><td colspan="5">no uploads yet</td></tr>'
    )
    quarantined = (
        _rows(
            [
                [
                    h.blake3[:16],
                    escape(h.reason),
                    escape(h.detail),
                    iso_ms(h.found_ms),
                    escape(h.last_error or ""),
                ]
                for h in s.scrub.unrepaired
            ]
        )
        or '<tr><td colspan="5">none</td></tr>'
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>modelyard {escape(s.node_id)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1em;max-width:70em}}
table{{border-collapse:collapse;width:100%;margin-bottom:1.5em;font-size:.9em}}
td,th{{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}}
.wrap{{overflow-x:auto}} .up{{color:#17803d}} .degraded{{color:#b26b00}}
.down,.held,.diverged,.resyncing{{color:#c0162f}} .unknown{{color:#666}}
dt{{font-weight:bold}} dd{{margin:0 0 .5em}}
</style></head><body>
<h1>modelyard node {escape(s.node_id)}</h1>
<dl><dt>Version</dt><dd>{escape(s.version)}</dd>
<dt>Uptime</dt><dd>{_duration(s.uptime_seconds)}</dd>
<dt>Storage</dt><dd>{s.blobs} blobs, {_size(s.blob_bytes)}</dd>
<dt>Disk</dt><dd id="disk">{_disk(s)}</dd>
<dt>Change log</dt><dd>serial {s.serial}</dd></dl>
{_history(s)}{_collisions(s)}<h2>Peers</h2><div class="wrap"><table id="peers">
<tr><th>peer</th><th>url</th><th>state</th><th>lag (entries)</th><th>lag</th>
<th>last success</th><th>last error</th></tr>{peers}</table></div>
<h2>Mirrors</h2><div class="wrap"><table id="mirrors">
<tr><th>mirror</th><th>kind</th><th>state</th><th>backlog</th><th>last success</th>
<th>last error</th></tr>{mirrors}</table></div>
<h2>Queues</h2><dl id="queues"><dt>Search index</dt><dd>{_index(s)}</dd>
<dt>Safety scans</dt><dd>{s.scans_pending} files pending</dd>
<dt>Scrub</dt><dd>{_scrub(s)}</dd></dl>
<h2>Quarantined blobs</h2><div class="wrap"><table id="quarantined">
<tr><th>blake3</th><th>reason</th><th>found</th><th>since</th><th>last repair error</th></tr>
{quarantined}</table></div>
<h2>Latest uploads</h2><div class="wrap"><table id="recent">
<tr><th>repo</th><th>commit</th><th>by</th><th>id</th><th>when</th></tr>{recent}</table></div>
<p><small>Refreshes every {REFRESH_SECONDS} s. JSON: <a href="/v1/status">/v1/status</a>.
Metrics: <a href="/metrics">/metrics</a>.</small></p>
</body></html>"""
