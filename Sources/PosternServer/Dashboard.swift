import NIOHTTP1

/// The admin API's web page: mediators, forwards and live traffic, read by the browser from
/// `/v1/status` and `/v1/mediators` with the same bearer token `ctl` uses. It is three fixed files
/// compiled in (no build step, nothing fetched from elsewhere), and they hold no data: they are
/// served without the token (the `Host` check still applies), while every figure they show comes
/// from a route that needs it. The page asks for the token and keeps it in `sessionStorage`
/// (gone when the tab closes); `#token=…` in the address hands it over once and is then removed.
///
/// Everything from the server, much of it written by mediators (host names, interface names,
/// versions), is put on the page as text (`textContent`), never parsed as HTML; the
/// Content-Security-Policy allows only these files' own script and style, so even a mistake
/// there could not run a script a mediator sent.
enum Dashboard {
    struct Asset {
        var contentType: String
        var body: String
    }

    /// GET paths served without the token.
    static func asset(_ path: String) -> Asset? {
        switch path {
        case "/", "/dashboard": Asset(contentType: "text/html; charset=utf-8", body: html)
        case "/dashboard.js": Asset(contentType: "text/javascript; charset=utf-8", body: script)
        case "/dashboard.css": Asset(contentType: "text/css; charset=utf-8", body: style)
        default: nil
        }
    }

    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    /// The headers every asset goes out with: the policy above, no MIME sniffing (a JSON answer
    /// is never taken for a script), no framing, no referrer, and nothing cached.
    static func headers(_ asset: Asset) -> HTTPHeaders {
        var h = HTTPHeaders()
        h.add(name: "Content-Type", value: asset.contentType)
        h.add(name: "Content-Length", value: "\(asset.body.utf8.count)")
        h.add(name: "Content-Security-Policy", value: contentSecurityPolicy)
        h.add(name: "X-Content-Type-Options", value: "nosniff")
        h.add(name: "X-Frame-Options", value: "DENY")
        h.add(name: "Referrer-Policy", value: "no-referrer")
        h.add(name: "Cache-Control", value: "no-store")
        return h
    }

    static let html = """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <title>Postern</title>
        <link rel="stylesheet" href="/dashboard.css">
        <script src="/dashboard.js" defer></script>
        </head>
        <body>
        <header>
        <h1>Postern</h1>
        <span id="server"></span>
        <span id="state" data-state="starting">loading…</span>
        <button id="forget" type="button" hidden>Forget token</button>
        </header>
        <form id="login" hidden>
        <label for="token">Admin token (STATE_DIR/admin.token on the server host):</label>
        <input id="token" type="password" autocomplete="off" spellcheck="false" required>
        <button type="submit">Show</button>
        </form>
        <main id="main" hidden>
        <section>
        <h2>Traffic</h2>
        <p class="figures">
        <span>forwards carried <strong id="traffic-total" data-bytes="0">0 B</strong></span>
        <span>now <strong id="traffic-rate" data-rate="0">0 B/s</strong></span>
        <span>mediator sessions <strong id="traffic-mediators" data-bytes="0">0 B</strong></span>
        </p>
        </section>
        <section>
        <h2>Mediators</h2>
        <table id="mediators">
        <thead><tr><th>Name</th><th>State</th><th>From</th><th>Host</th><th>Version</th><th>Sessions</th><th>Ports</th>
        <th>In</th><th>Out</th><th>Datagrams</th><th>RTT</th></tr></thead>
        <tbody></tbody>
        </table>
        <p id="no-mediators" hidden>No mediator seen yet.</p>
        </section>
        <section>
        <h2>Forwards</h2>
        <table id="forwards">
        <thead><tr><th>Forward</th><th>State</th><th>Open</th><th>Total</th><th>To mediator</th><th>From mediator</th>
        <th>Rate</th><th>Refused</th><th>Denied</th><th>Errors</th></tr></thead>
        <tbody></tbody>
        </table>
        <p id="no-forwards" hidden>No forwards configured.</p>
        </section>
        </main>
        </body>
        </html>

        """

    static let style = """
        body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5em 2em; color: #1d2328; background: #fbfbfa; }
        header { display: flex; gap: 1.5em; align-items: baseline; border-bottom: 1px solid #d5d8db; }
        h1 { font-size: 1.4em; margin: .6em 0; }
        h2 { font-size: 1.1em; margin: 1.4em 0 .5em; }
        #state[data-state="ok"] { color: #2c6e2f; }
        #state[data-state="error"], #state[data-state="unauthorized"] { color: #a3261b; }
        form { margin: 2em 0; display: flex; gap: .6em; align-items: center; flex-wrap: wrap; }
        input { font: inherit; padding: .2em .4em; min-width: 24em; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: .25em .7em .25em 0; border-bottom: 1px solid #e6e8ea; white-space: nowrap; }
        td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
        td.spec, td.host { white-space: normal; word-break: break-all; }
        tr[data-state="connected"] td:nth-child(2), tr[data-state="listening"] td:nth-child(2) { color: #2c6e2f; }
        tr[data-state="failed"] td:nth-child(2), tr[data-state="disconnected"] td:nth-child(2) { color: #a3261b; }
        .figures { display: flex; gap: 2.5em; font-size: 1.1em; }

        """

    static let script = """
        "use strict";
        // The Postern dashboard (Sources/PosternServer/Dashboard.swift). Every value from the server
        // goes onto the page through textContent or a data attribute, never as HTML.
        (function () {
          const KEY = "postern-admin-token";
          const INTERVAL = 1000;
          const $ = (id) => document.getElementById(id);
          let previous = null;
          let timer = null;

          // A token handed in the fragment (#token=...) is kept for this tab and taken out of the address.
          const hash = new URLSearchParams(location.hash.slice(1));
          if (hash.get("token")) {
            sessionStorage.setItem(KEY, hash.get("token"));
            history.replaceState(null, "", location.pathname + location.search);
          }

          function setState(state, text) {
            $("state").dataset.state = state;
            $("state").textContent = text;
          }

          function bytes(n) {
            const units = ["B", "KiB", "MiB", "GiB", "TiB"];
            let x = Number(n) || 0;
            let i = 0;
            while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
            return i === 0 ? x + " B" : x.toFixed(1) + " " + units[i];
          }

          function duration(seconds) {
            const s = Math.floor(seconds);
            return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h " + Math.floor(s % 3600 / 60) + "m " + (s % 60) + "s";
          }

          function cell(row, text, className) {
            const td = document.createElement("td");
            td.textContent = text === undefined || text === null ? "-" : String(text);
            if (className) td.className = className;
            row.appendChild(td);
            return td;
          }

          function byteCell(row, n) {
            const td = cell(row, bytes(n), "num");
            td.dataset.bytes = String(Number(n) || 0);
            return td;
          }

          function replaceRows(table, rows) {
            const body = $(table).tBodies[0];
            body.replaceChildren(...rows);
            $("no-" + table).hidden = rows.length > 0;
          }

          class Unauthorized extends Error {}

          async function get(path) {
            const response = await fetch(path, {
              headers: { "Authorization": "Bearer " + sessionStorage.getItem(KEY) },
              cache: "no-store",
              credentials: "omit",
              redirect: "error",
            });
            if (response.status === 401) throw new Unauthorized();
            if (!response.ok) throw new Error("HTTP " + response.status + " from " + path);
            return response.json();
          }

          function render(status, mediators, now) {
            $("server").textContent = "postern " + status.version + "  up " + duration(status.uptimeSeconds)
              + (status.process ? "  rss " + bytes(status.process.residentBytes) : "");
            const environment = new Map(mediators.map((m) => [m.name, m]));
            replaceRows("mediators", status.mediators.map((m) => {
              const row = document.createElement("tr");
              const e = environment.get(m.name) || {};
              row.dataset.mediator = m.name;
              row.dataset.state = m.connected ? "connected" : "disconnected";
              cell(row, m.name);
              cell(row, m.connected ? "connected" : "disconnected");
              cell(row, m.from);
              cell(row, e.hostname, "host");
              cell(row, e.softwareVersion);
              cell(row, m.sessions, "num");
              cell(row, m.ports, "num");
              byteCell(row, m.bytesIn);
              byteCell(row, m.bytesOut);
              cell(row, m.connected ? m.datagramPath : "-");
              cell(row, typeof m.keepaliveRTTSeconds === "number" ? (m.keepaliveRTTSeconds * 1000).toFixed(1) + " ms" : "-", "num");
              return row;
            }));
            let total = 0;
            const carried = new Map();
            const seconds = previous ? (now - previous.at) / 1000 : 0;
            replaceRows("forwards", status.forwards.map((f) => {
              const row = document.createElement("tr");
              const sum = (Number(f.bytesToMediator) || 0) + (Number(f.bytesFromMediator) || 0);
              total += sum;
              carried.set(f.spec, sum);
              row.dataset.forward = f.spec;
              row.dataset.state = f.state;
              cell(row, f.spec, "spec");
              cell(row, f.reason ? f.state + ": " + f.reason : f.state);
              cell(row, f.connectionsOpen, "num");
              cell(row, f.connectionsTotal, "num");
              byteCell(row, f.bytesToMediator);
              byteCell(row, f.bytesFromMediator);
              const before = previous && previous.carried.get(f.spec);
              const rate = seconds > 0 && before !== undefined ? Math.max(0, sum - before) / seconds : 0;
              const td = cell(row, bytes(Math.round(rate)) + "/s", "num");
              td.dataset.rate = String(Math.round(rate));
              cell(row, f.refusals, "num");
              cell(row, f.policyDenials, "num");
              cell(row, f.errors, "num");
              return row;
            }));
            const rate = seconds > 0 ? Math.max(0, total - previous.total) / seconds : 0;
            $("traffic-total").textContent = bytes(total);
            $("traffic-total").dataset.bytes = String(total);
            $("traffic-rate").textContent = bytes(Math.round(rate)) + "/s";
            $("traffic-rate").dataset.rate = String(Math.round(rate));
            const sessions = status.mediators.reduce((n, m) => n + (Number(m.bytesIn) || 0) + (Number(m.bytesOut) || 0), 0);
            $("traffic-mediators").textContent = bytes(sessions);
            $("traffic-mediators").dataset.bytes = String(sessions);
            previous = { at: now, total: total, carried: carried };
          }

          function showLogin(message) {
            clearTimeout(timer);
            $("main").hidden = true;
            $("forget").hidden = true;
            $("login").hidden = false;
            setState("unauthorized", message);
            $("token").focus();
          }

          async function poll() {
            clearTimeout(timer);
            try {
              const [status, mediators] = await Promise.all([get("/v1/status"), get("/v1/mediators")]);
              render(status, mediators, performance.now());
              $("main").hidden = false;
              $("forget").hidden = false;
              $("login").hidden = true;
              setState("ok", "updated " + new Date().toLocaleTimeString());
            } catch (error) {
              if (error instanceof Unauthorized) {
                sessionStorage.removeItem(KEY);
                return showLogin("the admin API refused the token");
              }
              setState("error", String(error.message || error));
            }
            timer = setTimeout(poll, INTERVAL);
          }

          $("login").addEventListener("submit", (event) => {
            event.preventDefault();
            sessionStorage.setItem(KEY, $("token").value.trim());
            $("token").value = "";
            previous = null;
            poll();
          });
          $("forget").addEventListener("click", () => {
            sessionStorage.removeItem(KEY);
            showLogin("token forgotten");
          });

          if (sessionStorage.getItem(KEY)) poll(); else showLogin("an admin token is needed");
        })();

        """
}
