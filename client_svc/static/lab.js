/* The live page of the TLS 1.2 handshake lab.
 *
 * It calls client_svc's JSON API (POST /handshake, POST /message, GET /sessions/<id>,
 * POST /api/prf, the /demo/* endpoints; it links GET /sessions/<id>/pcap) and draws what really happened: a sequence diagram
 * built from the exchanges that crossed the wire and both sides' trace, the two sides'
 * derivations with match marks, and P_hash's rounds.
 *
 * Every string that comes from a service reaches the page through textContent or an
 * attribute value, never as HTML (the page's CSP also forbids inline script and style).
 */
(function () {
  "use strict";

  const SVG_NS = "http://www.w3.org/2000/svg";
  const page = JSON.parse(document.getElementById("lab-page-data").textContent);
  const suites = new Map(page.suites.map((suite) => [suite.name, suite]));

  const state = {
    last: null, // the latest POST /handshake answer
    session: null, // GET /sessions/<id> for that connection
    messages: [], // POST /message answers on that connection
    expanded: new Set(), // diagram nodes opened by a click
    busy: false,
  };

  // -- DOM helpers: elements are built, never parsed from strings ----------------------------

  function $(id) {
    return document.getElementById(id);
  }

  function add(parent, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) add(parent, child);
      else if (child instanceof Node) parent.appendChild(child);
      else parent.appendChild(document.createTextNode(String(child)));
    }
    return parent;
  }

  /** Replaces a node's children; null, undefined and false are left out (unlike replaceChildren). */
  function fill(node, ...children) {
    node.replaceChildren();
    return add(node, children);
  }

  function setAttrs(node, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") {
        node.addEventListener(key.slice(2), value);
      } else if (key === "style" || key.startsWith("on")) {
        throw new Error("inline styles and handlers are not used on this page");
      } else {
        node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    return node;
  }

  function h(tag, attrs, ...children) {
    return add(setAttrs(document.createElement(tag), attrs), children);
  }

  function s(tag, attrs, ...children) {
    return add(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  function short(hex, chars) {
    if (typeof hex !== "string") return "—";
    const n = chars || 16;
    return hex.length > n ? hex.slice(0, n) + "…" : hex;
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  // -- the API --------------------------------------------------------------------------------

  async function api(method, path, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      const message = String((err && err.message) || err);
      return { ok: false, status: 0, data: { error: { code: "network_error", message } } };
    }
    const text = await response.text();
    let data;
    try {
      data = JSON.parse(text);
    } catch (_) {
      data = { error: { code: "not_json", message: text.slice(0, 500) } };
    }
    return { ok: response.ok, status: response.status, data };
  }

  function errorText(result) {
    const error = (result.data && result.data.error) || {};
    const by = error.peer ? ` (raised by ${error.peer}_svc)` : "";
    const status = result.status ? `HTTP ${result.status} ` : "";
    return `${status}${error.code || "error"}: ${error.message || "no message"}${by}`;
  }

  function setStatus(text, kind) {
    const node = $("status");
    node.textContent = text;
    node.className = `status ${kind || ""}`;
  }

  function setBusy(busy) {
    state.busy = busy;
    for (const id of ["run-rsa", "run-ecdhe", "run-dhe"]) $(id).disabled = busy;
    const hasConnection = Boolean(state.last);
    $("resume").disabled = busy || !hasConnection;
    $("send").disabled = busy || !hasConnection;
    $("resume-hint").textContent = hasConnection
      ? `Session ${short(state.last.session_id, 12)}: same master secret, fresh randoms, new keys.`
      : "Run a full handshake first.";
    const pcap = $("pcap");
    pcap.hidden = !hasConnection;
    if (hasConnection) pcap.href = `/sessions/${encodeURIComponent(state.last.connection_id)}/pcap`;
  }

  // -- handshakes and messages --------------------------------------------------------------

  async function runHandshake(kind) {
    const body = {
      key_exchange: kind,
      cipher_suite: $(`${kind}-suite`).value,
      extended_master_secret: $("ems").checked,
      encrypt_then_mac: $("etm").checked,
    };
    await handshake(body, `${kind.toUpperCase()} handshake`);
  }

  async function resumeSession() {
    if (!state.last) return;
    const body = { resume: state.last.session_id, encrypt_then_mac: $("etm").checked };
    await handshake(body, "Resumed handshake");
  }

  async function handshake(body, label) {
    setBusy(true);
    setStatus(`${label}: running…`, "busy");
    const started = performance.now();
    const result = await api("POST", "/handshake", body);
    if (!result.ok) {
      setStatus(`${label} failed — ${errorText(result)}`, "error");
      setBusy(false);
      return;
    }
    const took = Math.round(performance.now() - started);
    state.last = result.data;
    state.messages = [];
    state.expanded = new Set();
    state.session = null;
    const view = await api("GET", `/sessions/${encodeURIComponent(state.last.connection_id)}`);
    if (view.ok) state.session = view.data;
    renderAll();
    setBusy(false);
    const match = state.last.fingerprints_match ? "both sides derived the same keys ✓" : "the two sides' keys differ ✗";
    const note = view.ok ? "" : ` (could not read the session: ${errorText(view)})`;
    setStatus(`${label} done in ${took} ms: ${state.last.cipher_suite}, ${match}${note}`, view.ok ? "ok" : "error");
  }

  async function sendMessage(event) {
    event.preventDefault();
    if (!state.last || state.busy) return;
    const plaintext = $("plaintext").value;
    setBusy(true);
    setStatus("Sending a protected message…", "busy");
    const result = await api("POST", "/message", {
      plaintext,
      connection_id: state.last.connection_id,
    });
    if (!result.ok) {
      setStatus(`Message failed — ${errorText(result)}`, "error");
      setBusy(false);
      return;
    }
    if (result.data.connection_id !== state.last.connection_id) {
      setStatus(`client_svc replaced the lost connection with ${short(result.data.connection_id, 12)}; the reply was: ${result.data.reply.plaintext}. Run a handshake to draw the new one.`, "ok");
      setBusy(false);
      return;
    }
    state.messages.push({ plaintext, answer: result.data });
    const view = await api("GET", `/sessions/${encodeURIComponent(state.last.connection_id)}`);
    if (view.ok) state.session = view.data;
    renderDiagram();
    renderMessageLog();
    setBusy(false);
    setStatus(`Reply: ${result.data.reply.plaintext}`, "ok");
  }

  // -- the sequence diagram -------------------------------------------------------------------

  const W = 1000;
  const CX = 215; // client_svc's lifeline
  const SX = 785; // server_svc's lifeline
  const BOX_W = 390;

  function scale() {
    return document.documentElement.classList.contains("large") ? 1.3 : 1;
  }

  /** Splits text into at most maxLines lines of about maxChars characters. */
  function wrap(text, maxChars, maxLines) {
    const words = String(text).split(/\s+/).filter(Boolean);
    const lines = [];
    let line = "";
    for (const word of words) {
      const next = line ? `${line} ${word}` : word;
      if (next.length <= maxChars || !line) {
        line = next;
      } else {
        lines.push(line);
        line = word;
      }
    }
    if (line) lines.push(line);
    if (lines.length > maxLines) {
      const kept = lines.slice(0, maxLines);
      kept[maxLines - 1] = kept[maxLines - 1].slice(0, maxChars - 1) + "…";
      return kept;
    }
    return lines.map((l) => (l.length > maxChars ? l.slice(0, maxChars - 1) + "…" : l));
  }

  /** What crossed the wire, in order: each exchange's request, then its response. */
  function wireMessages() {
    const handshakeWire = [];
    const dataWire = [];
    const exchanges = (state.session && state.session.exchanges) || [];
    exchanges.forEach((exchange, index) => {
      const request = exchange.request || {};
      const target = request.path === "/message" ? dataWire : handshakeWire;
      target.push({ from: "client", path: request.path, method: request.method, body: request.body, index });
      if ("response" in exchange) {
        target.push({ from: "server", path: request.path, body: exchange.response, index });
      }
    });
    if (dataWire.length === 0) {
      // client_svc logs only the handshake exchanges; the records of each message are in
      // its /message answer, exactly as they crossed the wire.
      for (const { answer } of state.messages) {
        const id = answer.connection_id;
        dataWire.push({ from: "client", path: "/message", method: "POST", seq: answer.sent.seq, reconstructed: true, body: { connection_id: id, record: answer.sent.record } });
        dataWire.push({ from: "server", path: "/message", seq: answer.reply.seq, reconstructed: true, body: { connection_id: id, record: answer.reply.record } });
      }
    }
    return { handshakeWire, dataWire };
  }

  function recordBytes(b64) {
    if (typeof b64 !== "string") return 0;
    const pad = b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0;
    return (b64.length / 4) * 3 - pad;
  }

  /** The arrow's label, sub-label and kind for one message on the wire. */
  function describeWire(message) {
    const body = message.body || {};
    if (message.path === "/handshake/hello" && message.from === "client") {
      const offered = Array.isArray(body.cipher_suites) ? body.cipher_suites.length : 0;
      const resume = body.session_id ? ", asks to resume a session" : "";
      return { label: "ClientHello", sub: `client_random ${short(body.client_random, 12)}, ${plural(offered, "suite")}${resume}` };
    }
    if (message.path === "/handshake/hello") {
      const parts = ["ServerHello"];
      if (Array.isArray(body.certificate_chain) && body.certificate_chain.length) parts.push("Certificate");
      if (body.server_key_exchange) parts.push("ServerKeyExchange");
      if (body.certificate_request) parts.push("CertificateRequest");
      parts.push(body.finished_record ? "Finished" : "ServerHelloDone");
      return {
        label: parts.join(" + "),
        sub: `server_random ${short(body.server_random, 12)}, ${body.cipher_suite || "?"}`,
        protected: Boolean(body.finished_record),
      };
    }
    if (message.path === "/handshake/finish" && message.from === "client") {
      const kx = body.client_key_exchange || null;
      let sub = "Finished: protected record, seq 0";
      if (kx && kx.encrypted_pre_master_secret) sub = `pre-master secret RSA-encrypted (${recordBytes(kx.encrypted_pre_master_secret)} bytes), ${sub}`;
      else if (kx && kx.public_key) sub = `client's ECDH public key, ${sub}`;
      else if (kx && kx.dh_Yc) sub = `client's DH public value g^y mod p, ${sub}`;
      // Mutual TLS: the client's Certificate before its key exchange, CertificateVerify after.
      const parts = [];
      if (Array.isArray(body.certificate_chain)) parts.push("Certificate");
      if (kx) parts.push("ClientKeyExchange");
      if (body.certificate_verify) parts.push("CertificateVerify");
      parts.push("Finished");
      return { label: parts.join(" + "), sub, protected: true };
    }
    if (message.path === "/handshake/finish") {
      if (body.finished_record) {
        return { label: "Finished", sub: "protected record, seq 0 (and the server's fingerprints, a lab addition)", protected: true };
      }
      return { label: "HTTP reply (no TLS message)", sub: "the server's fingerprints and trace, a lab addition", lab: true };
    }
    if (message.path === "/alert" && message.from === "client") {
      const fatal = body.alert !== "close_notify";
      return { label: `Alert: ${body.alert || "?"}`, sub: fatal ? "fatal: the handshake or connection ends here" : "closes the connection" };
    }
    if (message.path === "/alert") {
      return { label: "HTTP reply (no TLS message)", sub: `the server ends it too (state ${body.state || "?"}), a lab addition`, lab: true };
    }
    if (message.path === "/message") {
      const seq = message.seq !== undefined ? message.seq : "?";
      return { label: "application_data", sub: `protected record, seq ${seq}, ${recordBytes(body.record)} bytes`, protected: true };
    }
    return { label: `${message.method || ""} ${message.path || "?"}`.trim(), sub: "" };
  }

  /** How the ladder colours a step, by its kind (docs/protocol.md §1.7), never its wording. */
  const DERIVE_KINDS = new Set([
    "send_encrypted_pre_master_secret",
    "send_ecdh_public_key",
    "decrypt_pre_master_secret",
    "ecdh_shared_secret",
    "send_dh_public_key",
    "dh_shared_secret",
    "master_secret",
    "extended_master_secret",
    "reuse_master_secret",
    "key_expansion",
    "key_split",
  ]);
  const CHECK_KINDS = new Set([
    "verify_certificate",
    "verify_server_key_exchange",
    "verify_finished",
    "verify_client_certificate",
    "verify_certificate_verify",
  ]);

  function stepCategory(kind) {
    if (DERIVE_KINDS.has(kind)) return "derive";
    if (CHECK_KINDS.has(kind)) return "check";
    return "message";
  }

  /** The diagram's rows: each flight's local steps, then the message that ends the flight. */
  function ladderRows() {
    const trace = Array.isArray(state.last.trace) ? state.last.trace : [];
    const { handshakeWire, dataWire } = wireMessages();
    const rows = [];
    const flights = trace.map((step) => step.flight || 0);
    const lastFlight = Math.max(handshakeWire.length, ...flights, 0);
    const indexed = trace.map((step, index) => ({ step, index }));
    for (let flight = 0; flight <= lastFlight; flight += 1) {
      for (const { step, index } of indexed.filter((t) => (t.step.flight || 0) === flight)) {
        rows.push({ kind: "step", id: `step-${index}`, step });
      }
      const message = handshakeWire[flight - 1];
      if (flight >= 1 && message) rows.push({ kind: "arrow", id: `wire-${flight - 1}`, message });
    }
    dataWire.forEach((message, i) => rows.push({ kind: "arrow", id: `data-${i}`, message }));
    return rows;
  }

  function lockIcon(x, y, k) {
    return s("g", { class: "lock", transform: `translate(${x} ${y}) scale(${k})` },
      s("path", { d: "M3 7 V4.5 a4 4 0 0 1 8 0 V7", class: "lock-shackle" }),
      s("rect", { x: 1, y: 7, width: 12, height: 9, rx: 2, class: "lock-body" }));
  }

  function detailPanel(row, y, k) {
    let title;
    let value;
    let secrets = null;
    let note = "";
    if (row.kind === "arrow") {
      const m = row.message;
      const what = m.from === "client" ? `request body client_svc sent (${m.method || "POST"} ${m.path})` : `response body server_svc sent (${m.path})`;
      title = what;
      value = m.body;
      if (m.reconstructed) note = "Rebuilt from client_svc's /message answer: the record is the exact bytes that crossed the wire.";
    } else {
      const st = row.step;
      const where = st.replica ? ` (replica ${st.replica})` : "";
      title = `${st.actor}_svc${where}, ${Number(st.elapsed_ms || 0).toFixed(1)} ms into its handshake: ${st.action} — ${st.purpose}`;
      value = st.data;
      secrets = st.secrets || null;
    }
    const text = json(value);
    const lines = text.split("\n").length + (secrets ? json(secrets).split("\n").length + 2 : 0);
    const height = Math.min(360, 56 + lines * 17) * k;
    const box = h("div", { class: `wire-detail ${row.kind}`, "data-for": row.id },
      h("p", { class: "wire-title" }, title),
      note ? h("p", { class: "wire-note" }, note) : null,
      h("pre", { class: "wire-json", tabindex: 0 }, text),
      secrets ? h("p", { class: "secret-label" }, "secret — shown because REVEAL_SECRETS=1") : null,
      secrets ? h("pre", { class: "wire-json wire-secret" }, json(secrets)) : null);
    const fo = s("foreignObject", { x: 20, y, width: W - 40, height, class: "detail-host" });
    fo.appendChild(box);
    return { node: fo, height };
  }

  function renderDiagram() {
    const host = $("diagram");
    if (!state.last) {
      fill(host, h("p", { class: "placeholder" }, "Run a handshake to draw its sequence diagram."));
      return;
    }
    const focused = document.activeElement && document.activeElement.getAttribute && document.activeElement.getAttribute("data-id");
    const k = scale();
    const titleSize = 16 * k;
    const smallSize = 13 * k;
    const rows = ladderRows();
    const nodes = [];
    let y = 78 * k;

    for (const row of rows) {
      const open = state.expanded.has(row.id);
      if (row.kind === "step") {
        const st = row.step;
        const cx = st.actor === "server" ? SX : CX;
        const x = cx - BOX_W / 2;
        const maxChars = Math.floor((BOX_W - 28) / (smallSize * 0.56));
        const lines = wrap(st.purpose || "", maxChars, 3);
        const boxH = (14 + titleSize * 1.2 + lines.length * smallSize * 1.3 + 8) * 1;
        const category = stepCategory(st.kind || "");
        // The side's own clock since its first step, and the replica that computed the step (a
        // fleet's connection may move between replicas); left out when the action needs the room.
        const replica = st.replica ? `${String(st.replica).slice(0, 6)} · ` : "";
        const elapsed = `${replica}+${Number(st.elapsed_ms || 0).toFixed(1)} ms`;
        const msFits = (st.action || "").length * titleSize * 0.62 + elapsed.length * smallSize * 0.6 + 40 < BOX_W;
        const g = s("g", {
          class: `node step ${st.actor} ${category}${open ? " open" : ""}`,
          "data-id": row.id,
          "data-actor": st.actor,
          "data-action": st.action,
          "data-kind": st.kind || "",
          "data-replica": st.replica || "",
          role: "button",
          tabindex: 0,
          "aria-expanded": open ? "true" : "false",
          "aria-label": `${st.actor}_svc step: ${st.action}. ${st.purpose}`,
        },
        s("title", {}, `${st.action}: ${st.purpose}${st.replica ? ` (replica ${st.replica})` : ""}`),
        s("rect", { x, y, width: BOX_W, height: boxH, rx: 8, class: "step-box" }),
        s("text", { x: x + 14, y: y + 8 + titleSize, class: "step-action", "font-size": titleSize }, st.action),
        msFits ? s("text", { x: x + BOX_W - 12, y: y + 8 + titleSize, class: "step-ms", "text-anchor": "end", "font-size": smallSize * 0.92 }, elapsed) : null,
        lines.map((line, i) => s("text", { x: x + 14, y: y + 12 + titleSize * 1.2 + (i + 1) * smallSize * 1.25, class: "step-purpose", "font-size": smallSize }, line)));
        nodes.push(g);
        y += boxH + 10 * k;
      } else {
        const m = row.message;
        const d = describeWire(m);
        const fromX = m.from === "client" ? CX : SX;
        const toX = m.from === "client" ? SX : CX;
        const maxChars = Math.floor((SX - CX - 40) / (titleSize * 0.62));
        const labelLines = d.label.length > maxChars ? splitLabel(d.label) : [d.label];
        const top = y;
        const labelTop = top + 6 * k;
        const lineY = labelTop + labelLines.length * titleSize * 1.25 + 6 * k;
        const subY = lineY + smallSize * 1.6;
        const rowH = subY - top + 8 * k;
        const classes = ["node", "arrow", `from-${m.from}`];
        if (d.protected) classes.push("protected");
        if (d.lab) classes.push("lab");
        if (open) classes.push("open");
        const labelWidth = Math.max(...labelLines.map((l) => l.length)) * titleSize * 0.6;
        const g = s("g", {
          class: classes.join(" "),
          "data-id": row.id,
          "data-label": d.label,
          "data-from": m.from,
          role: "button",
          tabindex: 0,
          "aria-expanded": open ? "true" : "false",
          "aria-label": `${m.from === "client" ? "client_svc to server_svc" : "server_svc to client_svc"}: ${d.label}. ${d.sub}. Shows the JSON.`,
        },
        s("title", {}, `${d.label} — click for the JSON that crossed the wire`),
        s("rect", { x: CX, y: top, width: SX - CX, height: rowH, class: "hit" }),
        labelLines.map((line, i) => s("text", { x: W / 2, y: labelTop + (i + 1) * titleSize * 1.15, "text-anchor": "middle", class: "arrow-label", "font-size": titleSize }, line)),
        d.protected ? lockIcon(W / 2 - labelWidth / 2 - 22 * k, labelTop + titleSize * 0.1, k) : null,
        s("line", { x1: fromX, y1: lineY, x2: toX + (m.from === "client" ? -4 : 4), y2: lineY, class: "arrow-line", "marker-end": `url(#head-${d.lab ? "lab" : m.from})` }),
        s("text", { x: W / 2, y: subY, "text-anchor": "middle", class: "arrow-sub", "font-size": smallSize }, d.sub));
        nodes.push(g);
        y += rowH + 8 * k;
      }
      if (open) {
        const panel = detailPanel(row, y, k);
        nodes.push(panel.node);
        y += panel.height + 12 * k;
      }
    }

    const height = y + 16 * k;
    const heads = ["client", "server"].map((who) => {
      const cx = who === "client" ? CX : SX;
      const bw = 210;
      return s("g", { class: `head ${who}` },
        s("rect", { x: cx - bw / 2, y: 10 * k, width: bw, height: 50 * k, rx: 10, class: "head-box" }),
        s("text", { x: cx, y: 10 * k + 24 * k, "text-anchor": "middle", class: "head-name", "font-size": 19 * k }, `${who}_svc`),
        s("text", { x: cx, y: 10 * k + 42 * k, "text-anchor": "middle", class: "head-role", "font-size": 12.5 * k }, who === "client" ? "TLS client" : "TLS server"));
    });
    const svg = s("svg", {
      viewBox: `0 0 ${W} ${Math.ceil(height)}`,
      class: "ladder",
      role: "group",
      "aria-label": "Sequence diagram of the last handshake",
      "data-arrows": rows.filter((r) => r.kind === "arrow").length,
    },
    s("defs", {},
      arrowHead("head-client", "#1d4ed8"),
      arrowHead("head-server", "#b45309"),
      arrowHead("head-lab", "#6b7280")),
    s("line", { x1: CX, y1: 60 * k, x2: CX, y2: height - 6, class: "lifeline client" }),
    s("line", { x1: SX, y1: 60 * k, x2: SX, y2: height - 6, class: "lifeline server" }),
    heads,
    nodes);
    fill(host, svg);
    if (focused) {
      const again = host.querySelector(`[data-id="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  }

  function splitLabel(label) {
    const parts = label.split(" + ");
    if (parts.length < 2) return [label];
    const half = Math.ceil(parts.length / 2);
    return [parts.slice(0, half).join(" + ") + " +", parts.slice(half).join(" + ")];
  }

  function arrowHead(id, color) {
    return s("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerUnits: "userSpaceOnUse", markerWidth: 18, markerHeight: 18, orient: "auto-start-reverse" },
      s("path", { d: "M0 0 L10 5 L0 10 z", fill: color }));
  }

  function toggleNode(node) {
    const id = node.getAttribute("data-id");
    if (!id) return;
    if (state.expanded.has(id)) state.expanded.delete(id);
    else state.expanded.add(id);
    node.focus();
    renderDiagram();
  }

  function onDiagramClick(event) {
    const node = event.target.closest && event.target.closest(".node");
    if (node) toggleNode(node);
  }

  function onDiagramKey(event) {
    if (event.key !== "Enter" && event.key !== " ") return;
    const node = event.target.closest && event.target.closest(".node");
    if (!node) return;
    event.preventDefault();
    toggleNode(node);
  }

  // -- the summary line and the message log ----------------------------------------------------

  function renderSummary() {
    const hs = state.last;
    const node = $("run-summary");
    if (!hs) {
      fill(node, "No handshake yet.");
      return;
    }
    const flag = (on) => (on ? "on" : "off");
    fill(node,
      h("strong", {}, hs.cipher_suite),
      ` · ${hs.resumed ? "abbreviated handshake (resumed session)" : "full handshake"}`,
      ` · key exchange ${String(hs.key_exchange).toUpperCase()}`,
      ` · extended master secret ${flag(hs.extended_master_secret)}`,
      ` · encrypt-then-MAC ${flag(hs.encrypt_then_mac)}`,
      " · connection ", h("code", {}, short(hs.connection_id, 12)));
  }

  function renderMessageLog() {
    const list = $("message-log");
    fill(list, ...state.messages.map(({ plaintext, answer }) => h("li", {},
      h("span", { class: "dir c2s" }, "client_svc → server_svc"), " ",
      h("q", {}, plaintext), ` sealed into ${plural(answer.sent.records, "record")} (seq ${answer.sent.seq})`,
      h("br"),
      h("span", { class: "dir s2c" }, "server_svc → client_svc"), " ",
      h("q", { class: "reply" }, answer.reply.plaintext), ` (seq ${answer.reply.seq})`)));
  }

  // -- the two sides' derivations -------------------------------------------------------------

  const KEY_NAMES = {
    client_write_mac_key: ["client_write_MAC_key", "integrity, client → server"],
    server_write_mac_key: ["server_write_MAC_key", "integrity, server → client"],
    client_write_key: ["client_write_key", "encryption, client → server"],
    server_write_key: ["server_write_key", "encryption, server → client"],
    client_write_iv: ["client_write_IV", "IV / nonce salt, client → server"],
    server_write_iv: ["server_write_IV", "IV / nonce salt, server → client"],
  };

  function sideSteps(actor) {
    return (state.last.trace || []).filter((step) => step.actor === actor);
  }

  function findData(steps, key) {
    for (const step of steps) {
      if (step.data && (typeof step.data[key] === "string" || typeof step.data[key] === "number")) return step.data[key];
    }
    return null;
  }

  function findSecret(steps, key) {
    for (const step of steps) {
      if (step.secrets && typeof step.secrets[key] === "string") return step.secrets[key];
    }
    return null;
  }

  function derivationRows() {
    const hs = state.last;
    const client = sideSteps("client");
    const server = sideSteps("server");
    const clientSecrets = hs.secrets || {};
    const fp = hs.fingerprints || {};
    const sfp = hs.server_fingerprints || {};
    const layout = hs.key_block_layout || [];
    const blockLength = layout.reduce((n, part) => n + part.length, 0);
    const kx = {
      rsa: "RSA: 48 bytes the client chose, sent encrypted",
      dhe: "DHE: g^xy mod p, computed on each side, never sent (leading zero bytes stripped)",
    }[hs.key_exchange] || "ECDHE: computed on each side, never sent";
    const rows = [
      {
        name: "pre-master secret",
        note: hs.resumed ? "resumed: no new one, the session's master secret is reused" : kx,
        bytes: findData(client, "pre_master_secret_length"),
        client: findData(client, "pre_master_secret_sha256"),
        server: findData(server, "pre_master_secret_sha256"),
        clientSecret: findSecret(client, "pre_master_secret"),
        serverSecret: findSecret(server, "pre_master_secret"),
        // An RSA server shows nothing computed from the decrypted pre-master secret alone:
        // a fingerprint would tell whether the padding was good (a Bleichenbacher oracle).
        serverMissing: hs.key_exchange === "rsa" && !hs.resumed ? "not shown: for RSA it would tell an attacker whether decryption worked (Bleichenbacher); the matching master secret proves it" : null,
      },
      {
        name: "master secret",
        note: hs.extended_master_secret ? 'PRF(pms, "extended master secret", session_hash)' : 'PRF(pms, "master secret", client_random + server_random)',
        bytes: 48,
        client: fp.master_secret,
        server: sfp.master_secret,
        clientSecret: clientSecrets.master_secret || null,
        serverSecret: findSecret(server, "master_secret"),
      },
      {
        name: "key block",
        note: 'PRF(master_secret, "key expansion", server_random + client_random)',
        bytes: blockLength,
        client: fp.key_block,
        server: sfp.key_block,
        clientSecret: clientSecrets.key_block || null,
        serverSecret: findSecret(server, "key_block"),
      },
    ];
    for (const part of layout) {
      const [label, use] = KEY_NAMES[part.name] || [part.name, ""];
      const range = part.length ? `${part.start}–${part.start + part.length - 1} (${part.length})` : "0";
      // Below 16 bytes (GCM salts, ChaCha20 nonce masks) both sides publish an HMAC keyed from
      // the connection's master secret instead of a SHA-256 anyone could reverse by trying values.
      const kind = part.hmac ? "hmac" : "sha256";
      rows.push({
        name: label,
        key: part.name,
        note: part.length ? use : "none: an AEAD suite needs no MAC key",
        bytes: range,
        kind,
        client: part[kind] || null,
        server: findData(server, `${part.name}_${kind}`),
        clientSecret: part.length ? clientSecrets[part.name] || null : null,
        serverSecret: part.length ? findSecret(server, part.name) : null,
        empty: part.length === 0,
      });
    }
    return rows;
  }

  const FINGERPRINT_TITLES = {
    sha256: "SHA-256 of the value",
    hmac: "HMAC-SHA256 under a key only the two ends can derive from the master secret: a value under 16 bytes could be found again from a plain SHA-256 by trying every value",
  };

  function fingerprintCell(value, secret, revealed, missing, kind) {
    if (!value) return h("td", { class: "fp none" }, missing ? h("span", { class: "withheld" }, missing) : "—");
    const label = kind === "hmac" ? "hmac" : "sha256";
    return h("td", { class: "fp" },
      h("span", { class: "fp-label", title: FINGERPRINT_TITLES[label] }, `${label} `),
      h("code", { title: value }, short(value, 16)),
      revealed && secret ? h("div", { class: "secret" }, h("span", { class: "secret-label" }, "secret — shown because REVEAL_SECRETS=1"), h("code", {}, secret)) : null);
  }

  function markCell(row) {
    if ((!row.client && !row.server) || (!row.server && row.serverMissing)) {
      return h("td", { class: "mark na" }, h("span", { role: "img", "aria-label": "not compared" }, "–"));
    }
    const ok = row.client && row.server && row.client === row.server;
    return h("td", { class: `mark ${ok ? "ok" : "bad"}` }, h("span", { role: "img", "aria-label": ok ? "match" : "differ" }, ok ? "✓" : "✗"));
  }

  function renderMatch() {
    const body = $("match-body");
    const hs = state.last;
    if (!hs) return;
    const revealed = Boolean(hs.secrets_revealed);
    $("secret-banner").hidden = !revealed;
    fill(body, ...derivationRows().map((row) => h("tr", { class: row.empty ? "empty" : "", "data-row": row.key || row.name },
      h("th", { scope: "row" }, h("span", { class: "row-name" }, row.name), h("span", { class: "row-note" }, row.note)),
      h("td", { class: "bytes" }, row.bytes === null || row.bytes === undefined ? "—" : String(row.bytes)),
      fingerprintCell(row.client, row.clientSecret, revealed, null, row.kind),
      fingerprintCell(row.server, row.serverSecret, revealed, row.serverMissing, row.kind),
      markCell(row))));
  }

  function renderKeyBar() {
    const host = $("key-block-bar");
    const hs = state.last;
    if (!hs) return;
    const layout = (hs.key_block_layout || []).filter((part) => part.length > 0);
    const total = layout.reduce((n, part) => n + part.length, 0) || 1;
    const x0 = 10;
    const width = W - 20;
    const short_names = {
      client_write_mac_key: "client MAC key",
      server_write_mac_key: "server MAC key",
      client_write_key: "client key",
      server_write_key: "server key",
      client_write_iv: "client IV",
      server_write_iv: "server IV",
    };
    let x = x0;
    const parts = layout.map((part) => {
      const w = (part.length / total) * width;
      const kind = part.name.endsWith("mac_key") ? "mac" : part.name.endsWith("_iv") ? "iv" : "key";
      const side = part.name.startsWith("client") ? "client" : "server";
      const name = short_names[part.name] || part.name;
      const fits = w > name.length * 8.2;
      const g = s("g", { class: `segment ${kind} ${side}` },
        s("title", {}, `${part.name}: bytes ${part.start}–${part.start + part.length - 1}`),
        s("rect", { x, y: 8, width: w, height: 46, class: "seg-box" }),
        s("text", { x: x + w / 2, y: 36, "text-anchor": "middle", class: "seg-name", "font-size": fits ? 15 : 11 }, fits ? name : name.replace(" key", "").replace("client", "c.").replace("server", "s.")),
        s("text", { x: x + 3, y: 74, class: "seg-range", "font-size": 12.5 }, String(part.start)));
      x += w;
      return g;
    });
    const noMac = (hs.key_block_layout || []).some((part) => part.length === 0);
    const svg = s("svg", { viewBox: `0 0 ${W} 84`, class: "key-bar", role: "img", "aria-label": `Key block of ${total} bytes cut into ${layout.length} values` },
      parts,
      s("text", { x: x0 + width, y: 74, "text-anchor": "end", class: "seg-range", "font-size": 12.5 }, String(total)));
    fill(host, svg, h("p", { class: "hint" },
      `key_block = PRF(master_secret, "key expansion", server_random + client_random): ${total} bytes, cut in RFC 5246 §6.3 order.`,
      noMac ? " This is an AEAD suite, so the two MAC keys are 0 bytes long; the IVs are the implicit nonce parts." : ""));
  }

  // -- the PRF calculator ---------------------------------------------------------------------

  function lastPrfHash() {
    const suite = state.last && suites.get(state.last.cipher_suite);
    return suite ? suite.prf_hash : "sha256";
  }

  function updatePresets() {
    const hs = state.last;
    const full = Boolean(hs) && !hs.resumed;
    $("preset-master").disabled = !full;
    $("preset-ems").disabled = !full || !hs.extended_master_secret;
    $("preset-expansion").disabled = !hs;
  }

  function fillPrf(secret, label, seed, length, hashName) {
    $("prf-secret").value = secret || "";
    $("prf-label").value = label;
    $("prf-seed").value = seed;
    $("prf-length").value = String(length);
    $("prf-hash").value = hashName;
    fill($("prf-result"));
  }

  function presetNote(parts) {
    fill($("preset-note"), ...parts);
  }

  function cr() {
    return h("code", { class: "cr", title: state.last.client_random }, `client_random (${short(state.last.client_random, 8)})`);
  }

  function sr() {
    return h("code", { class: "sr", title: state.last.server_random }, `server_random (${short(state.last.server_random, 8)})`);
  }

  function presetMaster() {
    const hs = state.last;
    const pms = findSecret(sideSteps("client"), "pre_master_secret");
    fillPrf(pms, "master secret", hs.client_random + hs.server_random, 48, lastPrfHash());
    presetNote([
      "Seed = ", cr(), " + ", sr(), ": client first (RFC 5246 §8.1). ",
      pms ? "The secret is the pre-master secret (shown because REVEAL_SECRETS=1). " : "Secret: the pre-master secret, hidden unless the stack runs with REVEAL_SECRETS=1. ",
      hs.extended_master_secret ? "This handshake used the extended master secret, so this classic formula does not give its master secret: try the extended master secret preset." : "",
    ]);
  }

  function presetEms() {
    const hs = state.last;
    const client = sideSteps("client");
    const pms = findSecret(client, "pre_master_secret");
    fillPrf(pms, "extended master secret", findData(client, "session_hash") || "", 48, lastPrfHash());
    presetNote([
      "Seed = session_hash, the hash of every handshake message up to ClientKeyExchange (RFC 7627 §4): ",
      "it ties the master secret to this very handshake, not only to the two randoms. ",
      pms ? "The secret is the pre-master secret (shown because REVEAL_SECRETS=1)." : "Secret: the pre-master secret, hidden unless the stack runs with REVEAL_SECRETS=1.",
    ]);
  }

  function presetExpansion() {
    const hs = state.last;
    const suite = suites.get(hs.cipher_suite);
    const ms = (hs.secrets && hs.secrets.master_secret) || "";
    fillPrf(ms, "key expansion", hs.server_random + hs.client_random, suite ? suite.key_block_length : 128, lastPrfHash());
    presetNote([
      "Seed = ", sr(), " + ", cr(), ": server first! The reverse of the master secret's seed (RFC 5246 §6.3). ",
      ms ? "The secret is the master secret (shown because REVEAL_SECRETS=1)." : "Secret: the master secret, hidden unless the stack runs with REVEAL_SECRETS=1.",
    ]);
  }

  async function runPrf(event) {
    event.preventDefault();
    const clean = (v) => v.replace(/\s+/g, "").toLowerCase();
    const body = {
      secret: clean($("prf-secret").value),
      label: $("prf-label").value,
      seed: clean($("prf-seed").value),
      length: Number.parseInt($("prf-length").value, 10),
      hash_name: $("prf-hash").value,
    };
    const out = $("prf-result");
    if (!Number.isInteger(body.length)) {
      fill(out, h("p", { class: "error" }, "Length must be a whole number of bytes."));
      return;
    }
    const result = await api("POST", "/api/prf", body);
    if (!result.ok) {
      fill(out, h("p", { class: "error" }, errorText(result)));
      return;
    }
    renderPrf(result.data);
  }

  function renderPrf(r) {
    const digest = r.hash_name === "sha384" ? 48 : 32;
    const rounds = r.a.map((a, i) => {
      const block = r.blocks[i];
      const used = Math.min(digest, r.length - i * digest);
      const blockCode = used < digest
        ? h("code", { class: "hex" }, block.slice(0, used * 2), h("span", { class: "unused", title: "computed but cut off: beyond the requested length" }, block.slice(used * 2)))
        : h("code", { class: "hex" }, block);
      return h("li", { class: "round" },
        h("div", { class: "calc" }, h("span", { class: "tag" }, `A(${i + 1})`), ` = HMAC(secret, A(${i})) `, h("code", { class: "hex a-value" }, a)),
        h("div", { class: "calc" }, h("span", { class: "tag block-tag" }, `block ${i + 1}`), ` = HMAC(secret, A(${i + 1}) + label + seed) `, blockCode,
          used < digest ? h("span", { class: "cut" }, ` only the first ${used} bytes are used`) : null));
    });
    const matches = [];
    const hs = state.last;
    if (hs && hs.fingerprints) {
      if (r.output_sha256 === hs.fingerprints.master_secret) matches.push("the master secret of the last handshake");
      if (r.output_sha256 === hs.fingerprints.key_block) matches.push("the key block of the last handshake");
    }
    fill($("prf-result"), 
      h("p", { class: "prf-summary" }, `P_${r.hash_name.toUpperCase()}: ${plural(r.a.length, "round")} of ${digest} bytes, output cut to ${r.length} bytes.`),
      h("div", { class: "calc seed-line" }, h("span", { class: "tag" }, "A(0)"), " = label + seed ", h("code", { class: "hex" }, r.p_hash_seed)),
      h("ol", { class: "rounds" }, rounds),
      h("div", { class: "calc output" }, h("span", { class: "tag out-tag" }, "output"), " ", h("code", { class: "hex", id: "prf-output" }, r.output)),
      matches.length ? h("p", { class: "prf-match ok" }, `✓ equals ${matches.join(" and ")} (same SHA-256 fingerprint)`) : null);
  }

  // -- demos ----------------------------------------------------------------------------------

  const EXPLANATION_KEYS = ["explanation", "lesson", "summary", "description", "what_happened", "result", "message"];
  const TITLE_KEYS = ["title", "demo", "name"];

  /** Alerts anywhere in a demo answer: objects naming an alert code and the side that raised it. */
  function findAlerts(value, found, depth) {
    if (depth > 6 || found.length >= 12 || value === null || typeof value !== "object") return found;
    if (Array.isArray(value)) {
      for (const item of value.slice(0, 50)) findAlerts(item, found, depth + 1);
      return found;
    }
    let code = null;
    let side = value.side || value.raised_by || value.by || value.actor || value.peer || null;
    let status = value.status;
    if (typeof value.alert === "string") {
      code = value.alert;
    } else if (value.alert && typeof value.alert === "object" && typeof value.alert.code === "string") {
      code = value.alert.code;
      side = value.alert.side || value.alert.raised_by || value.alert.by || side;
      status = value.alert.status || status;
    } else if (typeof value.code === "string" && (side || typeof value.message === "string")) {
      code = value.code;
    }
    if (code) found.push({ code, side, status });
    for (const [key, child] of Object.entries(value)) {
      if (key !== "alert") findAlerts(child, found, depth + 1);
    }
    return found;
  }

  function firstString(obj, keys) {
    for (const key of keys) {
      const value = obj[key];
      if (typeof value === "string" && value) return [key, value];
      if (Array.isArray(value) && value.length && value.every((v) => typeof v === "string")) return [key, value.join(" ")];
    }
    return [null, null];
  }

  /** A demo's story, when it tells one as [{side, action, detail}]. */
  function demoSteps(steps) {
    if (!Array.isArray(steps) || !steps.length) return null;
    const items = steps.filter((step) => step && typeof step === "object").slice(0, 40).map((step) => h("li", { class: `demo-step ${step.side === "server" || step.side === "client" ? step.side : "other"}` },
      step.side ? h("span", { class: "demo-side" }, String(step.side)) : null,
      h("strong", {}, String(step.action || "")),
      step.detail ? ` — ${String(step.detail)}` : ""));
    return items.length ? h("ol", { class: "demo-steps" }, items) : null;
  }

  /** The outcome object's short fields (its nested parts stay in the raw JSON). */
  function outcomeFields(outcome) {
    if (!outcome || typeof outcome !== "object" || Array.isArray(outcome)) return null;
    const rows = Object.entries(outcome).filter(([, v]) => typeof v === "boolean" || typeof v === "number" || (typeof v === "string" && v.length <= 200));
    if (!rows.length) return null;
    return h("div", { class: "demo-outcome" }, h("h4", {}, "Outcome"),
      h("dl", { class: "demo-fields" }, rows.map(([key, value]) => h("div", {}, h("dt", {}, key), h("dd", {}, String(value))))));
  }

  function renderDemo(result, button, path, body) {
    const data = result.data && typeof result.data === "object" ? result.data : {};
    const request = `POST ${path} ${JSON.stringify(body)} → ${result.status ? `HTTP ${result.status}` : "no answer"}`;
    const children = [];
    if (!result.ok) {
      const error = data.error || {};
      children.push(
        h("h3", {}, `${button.textContent}: ${error.code || "error"}`),
        h("p", { class: "demo-request" }, request),
        h("p", { class: "error" }, error.message || "The endpoint answered with an error."),
        result.status === 404 ? h("p", { class: "hint" }, "This demo endpoint is not available on this client_svc.") : null);
    } else {
      const [titleKey, title] = firstString(data, TITLE_KEYS);
      const [explanationKey, explanation] = firstString(data, EXPLANATION_KEYS);
      const alerts = findAlerts(data, [], 0);
      const used = new Set([...TITLE_KEYS, explanationKey, "steps", "outcome"]);
      const scalars = Object.entries(data).filter(([key, value]) => !used.has(key) && (typeof value === "boolean" || typeof value === "number" || (typeof value === "string" && value.length <= 140)));
      children.push(
        h("h3", {}, title || button.textContent),
        h("p", { class: "demo-request" }, request),
        explanation ? h("p", { class: "demo-explanation" }, explanation) : null,
        alerts.length ? h("ul", { class: "alerts" }, alerts.map((a) => h("li", {},
          h("span", { class: "alert-code" }, `alert ${a.code}`),
          a.side ? ` raised by ${a.side}` : "",
          a.status ? ` (HTTP ${a.status})` : ""))) : null,
        demoSteps(data.steps),
        outcomeFields(data.outcome),
        scalars.length ? h("dl", { class: "demo-fields" }, scalars.map(([key, value]) => h("div", {}, h("dt", {}, key), h("dd", {}, String(value))))) : null);
    }
    children.push(h("details", { class: "raw" }, h("summary", {}, "Raw JSON"), h("pre", { class: "wire-json" }, json(result.data))));
    const card = h("article", { class: `demo-card ${result.ok ? "ok" : "failed"}`, "data-path": path }, children);
    const output = $("demo-output");
    output.prepend(card);
    while (output.children.length > 8) output.lastElementChild.remove();
  }

  async function runDemo(event) {
    const button = event.currentTarget;
    const path = button.getAttribute("data-path");
    const field = button.getAttribute("data-field");
    const body = field ? { [field]: button.getAttribute("data-value") } : {};
    button.disabled = true;
    try {
      const result = await api("POST", path, body);
      renderDemo(result, button, path, body);
    } finally {
      button.disabled = false;
    }
  }

  // -- wiring ---------------------------------------------------------------------------------

  function renderAll() {
    renderSummary();
    renderDiagram();
    renderMatch();
    renderKeyBar();
    renderMessageLog();
    updatePresets();
  }

  function setLargeType(on) {
    document.documentElement.classList.toggle("large", on);
    $("large-type").setAttribute("aria-pressed", on ? "true" : "false");
    try {
      window.localStorage.setItem("lab-large-type", on ? "1" : "0");
    } catch (_) {
      /* storage may be off; the toggle still works for this page */
    }
    renderDiagram();
  }

  function init() {
    let large = false;
    try {
      large = window.localStorage.getItem("lab-large-type") === "1";
    } catch (_) {
      large = false;
    }
    setLargeType(large);
    $("large-type").addEventListener("click", () => setLargeType(!document.documentElement.classList.contains("large")));
    $("run-rsa").addEventListener("click", () => runHandshake("rsa"));
    $("run-ecdhe").addEventListener("click", () => runHandshake("ecdhe"));
    $("run-dhe").addEventListener("click", () => runHandshake("dhe"));
    $("resume").addEventListener("click", resumeSession);
    $("message-form").addEventListener("submit", sendMessage);
    $("diagram").addEventListener("click", onDiagramClick);
    $("diagram").addEventListener("keydown", onDiagramKey);
    $("preset-master").addEventListener("click", presetMaster);
    $("preset-ems").addEventListener("click", presetEms);
    $("preset-expansion").addEventListener("click", presetExpansion);
    $("prf-form").addEventListener("submit", runPrf);
    for (const button of document.querySelectorAll("button.demo")) button.addEventListener("click", runDemo);
    setBusy(false);
    document.documentElement.setAttribute("data-ready", "true");
  }

  init();
})();
