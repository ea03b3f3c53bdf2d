/* LocalAI web UI. Plain browser JavaScript, no build step and no dependencies.
 *
 * Every page is server-rendered HTML that this script fills from the server's JSON APIs.
 * Requests carry "Authorization: Bearer <key>" when the user gave a key; any 401 opens the
 * key dialog once and retries. Job progress comes from the server-sent event streams
 * (/backends/events, /models/events), read with fetch so that the key is sent there too.
 */
"use strict";

(() => {
  const KEY_STORAGE = "localai-api-key";

  // -- small DOM helpers ------------------------------------------------------------------

  const $ = (selector, root = document) => root.querySelector(selector);

  /** el("a", {href: "/x", class: "y"}, "text", child…): children are text or nodes, never HTML. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** A control's visible text plus the item it acts on for screen readers ("Install" + " llama-cpp"). */
  const labelled = (text, item) => [text, el("span", { class: "visually-hidden" }, ` ${item}`)];

  function show(node, text) {
    if (!node) return;
    node.textContent = text || "";
    node.hidden = !text;
  }

  function formatBytes(n) {
    if (!n) return "0 B";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
  }

  function formatDate(value) {
    if (!value) return "";
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? String(value) : `${date.toLocaleString()} (${value})`;
  }

  // -- API key ----------------------------------------------------------------------------

  function storedKey() {
    try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }

  function storeKey(key) {
    try {
      if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
    } catch { /* storage disabled: the key lasts for this page only */ }
    memoryKey = key;
  }

  let memoryKey = null;
  const currentKey = () => (memoryKey !== null ? memoryKey : storedKey());
  let keyPrompt = null;

  /** Open the key dialog (once, however many requests are waiting); true when a key was saved. */
  function askKey(reason) {
    const rejected = "The server rejected that key. Check it and try again.";
    if (keyPrompt) {
      if (reason === "rejected") show($("#key-dialog-error"), rejected); // a key failed while it is open
      return keyPrompt;
    }
    const dialog = $("#key-dialog");
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(false);
    keyPrompt = new Promise((resolve) => {
      const input = $("#key-input");
      input.value = currentKey();
      show($("#key-dialog-error"), reason === "rejected" ? rejected : "");
      $("#key-dialog-title").textContent = reason === "manage" ? "API key" : "API key required";
      dialog.returnValue = "";
      dialog.addEventListener("close", () => {
        keyPrompt = null;
        const action = dialog.returnValue;
        if (action === "save" && input.value.trim()) {
          storeKey(input.value.trim());
          resolve(true);
        } else if (action === "clear" || (action === "save" && !input.value.trim())) {
          storeKey("");
          resolve(reason === "manage");
        } else {
          resolve(false);
        }
      }, { once: true });
      dialog.showModal();
      input.focus();
      input.select();
    });
    return keyPrompt;
  }

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function errorFrom(response) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const text = await response.text();
      try {
        const body = JSON.parse(text);
        message = (body.error && (body.error.message || body.error)) || body.message || message;
      } catch {
        if (text.trim()) message = text.trim().slice(0, 500);
      }
    } catch { /* keep the status line */ }
    if (response.status === 401) message = `API key required: ${message}`;
    return new HttpError(response.status, String(message));
  }

  /** fetch() with the API key; a 401 asks for the key and retries. Throws HttpError when not ok. */
  async function api(path, options = {}) {
    for (let attempt = 0; ; attempt += 1) {
      const headers = new Headers(options.headers || {});
      const key = currentKey();
      if (key) headers.set("Authorization", `Bearer ${key}`);
      let response;
      try {
        response = await fetch(path, { ...options, headers });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new HttpError(0, `cannot reach the server (${error.message})`);
      }
      if (response.status === 401 && attempt < 5) {
        if (currentKey() && currentKey() !== key) continue; // sent before the user gave a (new) key
        if (await askKey(key ? "rejected" : "required")) continue;
      }
      if (!response.ok) throw await errorFrom(response);
      return response;
    }
  }

  const getJSON = async (path) => (await api(path)).json();
  const postJSON = async (path, body, options = {}) => (await api(path, {
    ...options, method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  })).json();

  // -- server-sent events over fetch ------------------------------------------------------

  /** Yield {event, data} for each event of an SSE response body. */
  async function* readEvents(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "event") event = value;
          else if (field === "data") data.push(value);
        }
        if (data.length) yield { event, data: data.join("\n") };
      }
    }
  }

  /** Follow a job event stream for the page's lifetime, reconnecting when it drops. */
  function followJobs(path, onStatus, onState) {
    let delay = 500;
    (async () => {
      for (;;) {
        try {
          const response = await api(path, { headers: { Accept: "text/event-stream" } });
          onState(true);
          delay = 500;
          for await (const { data } of readEvents(response)) {
            try { onStatus(JSON.parse(data)); } catch (error) { console.error("bad job event", error); }
          }
        } catch (error) {
          if (error.status === 401) return; // the user declined to give a key
        }
        onState(false);
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 5000);
      }
    })();
  }

  // -- model types, from tags and names -----------------------------------------------------

  const TYPES = [
    ["llm", "LLM", ["llm", "llms", "text-to-text", "chat", "completion", "text-generation", "gguf", "llama", "llama-cpp",
      "vllm", "mlx", "exllama", "exllama2", "transformers", "ggml", "instruct"]],
    ["diffusion", "Diffusion", ["diffusion", "diffusers", "stablediffusion", "stable-diffusion", "text-to-image",
      "image-generation", "image", "images", "sd", "flux", "text-to-video", "video"]],
    ["tts", "TTS", ["tts", "text-to-speech", "piper", "bark", "coqui", "kokoro", "chatterbox", "speech-synthesis",
      "vibevoice", "kitten-tts", "neutts"]],
    ["whisper", "Whisper", ["whisper", "stt", "speech-to-text", "speech-recognition", "transcription", "asr",
      "audio-transcription", "faster-whisper"]],
    ["embeddings", "Embeddings", ["embeddings", "embedding", "rerank", "reranker", "rerankers", "reranking",
      "sentence-transformers", "feature-extraction"]],
  ];
  const TYPE_LABEL = Object.fromEntries(TYPES.map(([key, label]) => [key, label]));

  /** The type keys of a gallery entry: from its tags, else from words of its name. */
  function typesOf(entry, extraNames = []) {
    const tags = (entry.tags || []).map((tag) => String(tag).toLowerCase());
    const fromTags = TYPES.filter(([, , words]) => tags.some((tag) => words.includes(tag))).map(([key]) => key);
    if (fromTags.length) return fromTags;
    const names = [entry.name, entry.alias, ...extraNames].filter(Boolean).map((n) => String(n).toLowerCase());
    const found = new Set();
    for (const name of names) {
      if (/sentence-transformers|embed|rerank/.test(name)) { found.add("embeddings"); continue; }
      if (/whisper/.test(name)) { found.add("whisper"); continue; }
      const tokens = name.split(/[^a-z0-9]+/).filter(Boolean);
      for (const [key, , words] of TYPES) {
        if (tokens.some((token) => words.includes(token)) || words.some((w) => w.includes("-") && name.includes(w))) {
          found.add(key);
        }
      }
    }
    return [...found];
  }

  function matches(entry, types, query) {
    if (!query) return true;
    const haystack = [entry.name, entry.alias, entry.description, entry.gallery, ...(entry.tags || []),
      ...types.map((t) => TYPE_LABEL[t])].filter(Boolean).join(" ").toLowerCase();
    return query.toLowerCase().split(/\s+/).filter(Boolean).every((term) => haystack.includes(term));
  }

  // -- job progress -------------------------------------------------------------------------

  /** Fill a .job box with a job's progress bar and message. */
  function renderJob(box, status, verb) {
    box.replaceChildren();
    if (!status) return;
    if (status.processed) {
      if (status.error) {
        box.append(el("span", { class: "msg error", role: "alert" }, `${verb} failed: ${status.error}`));
      } else {
        box.append(el("progress", { max: 100, value: 100, "aria-label": `${verb} progress` }),
          el("span", { class: "msg done" }, status.message || "done"));
      }
      return;
    }
    const bar = el("progress", { max: 100, "aria-label": `${verb} progress` });
    if (status.progress > 0) bar.value = status.progress;
    const sizes = status.file_size ? ` · ${formatBytes(status.downloaded_size)} / ${formatBytes(status.file_size)}` : "";
    const percent = status.progress > 0 ? ` ${Math.round(status.progress)}%` : "";
    box.append(bar, el("span", { class: "msg" }, `${status.message || "working"}${percent}${sizes}`));
  }

  /** Tracks gallery jobs from an event stream, and who started them. */
  class Jobs {
    constructor(eventsPath, onChange) {
      this.statuses = new Map();
      this.onChange = onChange;
      this.live = false;
      this.watched = new Map(); // job id -> status path
      followJobs(eventsPath, (status) => this.update(status), (live) => { this.live = live; });
      // when the stream is down, poll the jobs this page started
      setInterval(() => this.poll(), 1500);
    }

    watch(id, statusPath, kind) {
      this.watched.set(id, statusPath);
      if (!this.statuses.has(id)) this.statuses.set(id, { id, kind, processed: false, progress: 0, message: "waiting for the server" });
      this.onChange(this.statuses.get(id));
    }

    update(status) {
      const previous = this.statuses.get(status.id);
      this.statuses.set(status.id, status);
      if (previous && previous.processed && status.processed) return;
      this.onChange(status);
    }

    get(id) { return id ? this.statuses.get(id) : undefined; }

    async poll() {
      if (this.live) return;
      for (const [id, path] of this.watched) {
        const known = this.statuses.get(id);
        if (known && known.processed) continue;
        try { this.update(await getJSON(path)); } catch { /* try again on the next tick */ }
      }
    }
  }

  // -- the gallery catalog (backends and models) ------------------------------------------------

  /**
   * Cards for gallery entries with search, type filters, install/delete and live progress.
   * options: {kind, verb, keyOf(entry), install(entry) -> job id, remove(entry) -> job id,
   *           isInstalled(entry), info(entry), describe(entry) -> extra badges}
   */
  class Catalog {
    constructor(options) {
      Object.assign(this, options);
      this.container = $("#gallery");
      this.entries = [];
      this.cards = new Map();
      this.jobOf = new Map(); // entry key -> job id started here
      this.filter = "all";
      this.query = "";
      const search = $(".search");
      search.addEventListener("input", () => { this.query = search.value.trim(); this.applyFilters(); });
      for (const chip of document.querySelectorAll(".filters .chip")) {
        chip.addEventListener("click", () => {
          this.filter = chip.dataset.filter;
          for (const other of document.querySelectorAll(".filters .chip")) {
            other.setAttribute("aria-pressed", String(other === chip));
          }
          this.applyFilters();
        });
      }
    }

    /** Ids of the finished jobs started here: lists fetched after this reflect them. */
    finishedJobs() {
      return new Set([...this.jobOf.values()].filter((id) => (this.jobs.get(id) || {}).processed));
    }

    setEntries(entries, emptyMessage, settled = new Set()) {
      this.entries = entries;
      this.settled = settled;
      const keys = new Set(entries.map((e) => this.keyOf(e)));
      for (const [key, card] of this.cards) {
        if (!keys.has(key)) { card.root.remove(); this.cards.delete(key); }
      }
      this.container.querySelector(".empty, .muted")?.remove();
      const roots = [];
      for (const entry of entries) {
        const key = this.keyOf(entry);
        let card = this.cards.get(key);
        if (!card) {
          card = this.buildCard(entry);
          this.cards.set(key, card);
        }
        card.entry = entry;
        roots.push(card.root);
        this.updateCard(card);
      }
      // gallery order; nodes already in place are not moved (moving one would drop its focus)
      const current = [...this.container.querySelectorAll(":scope > .card")];
      if (current.length !== roots.length || current.some((node, i) => node !== roots[i])) this.container.append(...roots);
      this.emptyMessage = emptyMessage;
      this.applyFilters();
    }

    buildCard(entry) {
      const key = this.keyOf(entry);
      const types = typesOf(entry);
      const card = { entry, types };
      const titleId = `card-${this.kind}-${key}`.replace(/[^A-Za-z0-9_-]/g, "_");
      card.state = el("span", { class: "state" });
      card.install = el("button", { type: "button", class: "btn btn-primary btn-small install",
        onclick: () => this.start(card, "install") }, labelled("Install", entry.name));
      card.remove = el("button", { type: "button", class: "btn btn-danger btn-small delete",
        onclick: () => this.start(card, "delete") }, labelled("Delete", entry.name));
      card.infoButton = el("button", { type: "button", class: "btn btn-small info",
        onclick: () => this.info(card.entry) }, labelled("Details", `of ${entry.name}`));
      card.job = el("div", { class: "job", "aria-live": "polite" });
      const typeBadges = types.length
        ? types.map((t) => el("span", { class: "badge type" }, TYPE_LABEL[t]))
        : [el("span", { class: "badge type" }, "Other")];
      card.root = el("article", { class: "card", "aria-labelledby": titleId, dataset: { name: entry.name, key } },
        el("div", { class: "card-head" }, el("h3", { id: titleId }, entry.name), card.state),
        entry.description ? el("p", { class: "desc" }, entry.description) : null,
        el("div", { class: "badges" }, typeBadges, ...(this.describe ? this.describe(entry) : [])),
        el("div", { class: "actions" }, card.install, card.remove, card.infoButton),
        card.job);
      return card;
    }

    updateCard(card) {
      const status = this.jobs.get(this.jobOf.get(this.keyOf(card.entry)));
      const busy = status && !status.processed;
      const deletion = Boolean(status && status.kind && status.kind.endsWith("delete"));
      const finished = status && status.processed && !status.error && !(this.settled && this.settled.has(status.id));
      // a job that just finished decides until the lists are fetched again
      const installed = finished ? !deletion : this.isInstalled(card.entry);
      const hadFocus = card.root.contains(document.activeElement) ? document.activeElement : null;
      card.root.classList.toggle("is-installed", installed);
      card.state.className = "state";
      if (busy) {
        card.state.classList.add("working");
        card.state.textContent = deletion ? "Deleting…" : "Installing…";
      } else if (status && status.error) {
        card.state.classList.add("failed");
        card.state.textContent = "Failed";
      } else if (installed) {
        card.state.classList.add("installed");
        card.state.textContent = "Installed";
      } else {
        card.state.textContent = card.entry.is_meta ? "Meta · not installed" : "Not installed";
      }
      card.install.hidden = installed && !busy;
      card.install.replaceChildren(...labelled(busy ? "Working…" : (status && status.error ? "Retry" : "Install"),
        card.entry.name));
      card.install.setAttribute("aria-disabled", String(Boolean(busy)));
      card.remove.hidden = !installed;
      card.remove.setAttribute("aria-disabled", String(Boolean(busy)));
      renderJob(card.job, status, deletion ? "Delete" : "Install");
      if (hadFocus && hadFocus.hidden) (installed ? card.remove : card.install).focus();
    }

    async start(card, action) {
      const key = this.keyOf(card.entry);
      const running = this.jobs.get(this.jobOf.get(key));
      if (running && !running.processed) return;
      if (action === "delete" && !window.confirm(`Delete ${card.entry.name}?`)) return;
      card.job.replaceChildren(el("span", { class: "msg" }, action === "delete" ? "Deleting…" : "Starting install…"));
      try {
        const id = action === "delete" ? await this.remove(card.entry) : await this.install(card.entry);
        this.jobOf.set(key, id);
        this.jobs.watch(id, this.statusPath(id), action);
      } catch (error) {
        renderJob(card.job, { processed: true, error: error.message }, action === "delete" ? "Delete" : "Install");
      }
    }

    /** A job changed: update the card that started it, or the card it names. */
    jobChanged(status) {
      let card = null;
      for (const [key, id] of this.jobOf) if (id === status.id) card = this.cards.get(key);
      // a job started elsewhere (another tab, a script using the API) is followed while it runs
      if (!card && !status.processed && status.gallery_element_name && status.id) {
        const name = status.gallery_element_name;
        card = this.cards.get(name) || [...this.cards.values()].find((c) => c.entry.name === name) || null;
        if (card && this.ownsKind(status.kind)) this.jobOf.set(this.keyOf(card.entry), status.id);
        else card = null;
      }
      if (card) this.updateCard(card);
    }

    refreshCards() { for (const card of this.cards.values()) this.updateCard(card); }

    applyFilters() {
      let visible = 0;
      for (const card of this.cards.values()) {
        const ok = (this.filter === "all" || card.types.includes(this.filter)) && matches(card.entry, card.types, this.query);
        card.root.hidden = !ok;
        if (ok) visible += 1;
      }
      let empty = this.container.querySelector(".empty");
      const message = !this.cards.size ? this.emptyMessage : (visible ? "" : "Nothing matches the search and filter.");
      if (message) {
        if (!empty) { empty = el("p", { class: "empty" }); this.container.append(empty); }
        empty.textContent = message;
      } else if (empty) {
        empty.remove();
      }
      $("#gallery-count").textContent = this.cards.size ? `(${visible} of ${this.cards.size})` : "";
    }
  }

  // -- details dialog -----------------------------------------------------------------------

  function details(rows) {
    const list = el("dl", { class: "details" });
    for (const [label, value] of rows) {
      if (value === undefined || value === null || value === "" || (Array.isArray(value) && !value.length)) continue;
      list.append(el("dt", {}, label), el("dd", {}, value));
    }
    return list;
  }

  function links(urls) {
    if (!urls || !urls.length) return null;
    return el("ul", {}, urls.map((url) => el("li", {}, /^https?:\/\//i.test(url)
      ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, url) : url)));
  }

  function openInfo(title, content) {
    const dialog = $("#info-dialog");
    $("#info-title").textContent = title;
    $("#info-body").replaceChildren(content);
    dialog.showModal();
  }

  // -- page: backends -------------------------------------------------------------------------

  async function backendsPage() {
    let installed = [];
    const installedByName = () => new Map(installed.map((b) => [b.Name, b]));
    const rowJobs = new Map(); // installed backend name -> its delete job id
    const jobs = new Jobs("/backends/events", (status) => {
      catalog.jobChanged(status);
      if (status.id === manualJob) renderJob($("#manual-status"), status, "Install");
      for (const [name, id] of rowJobs) {
        const box = document.querySelector(`#installed-list .row[data-name="${CSS.escape(name)}"] .job`);
        if (id === status.id && box) renderJob(box, status, "Delete");
      }
      if (status.processed) scheduleRefresh();
    });
    let manualJob = null;
    let entries = [];

    const catalog = new Catalog({
      kind: "backends",
      jobs,
      keyOf: (e) => (e.gallery ? `${e.gallery}@${e.name}` : e.name),
      isInstalled: (e) => Boolean(e.installed) || installedByName().has(e.name),
      install: async (e) => (await postJSON("/backends/apply", { id: e.gallery ? `${e.gallery}@${e.name}` : e.name })).id,
      remove: async (e) => (await postJSON(`/backends/delete/${encodeURIComponent(e.name)}`, {})).id,
      statusPath: (id) => `/backends/jobs/${id}`,
      ownsKind: (kind) => ["install", "delete", "upgrade"].includes(kind),
      info: (e) => backendInfo(e),
      describe: (e) => [e.is_meta ? el("span", { class: "badge" }, "meta") : null,
        e.gallery ? el("span", { class: "badge" }, e.gallery) : null],
    });

    function backendInfo(entry, backend) {
      const inst = backend || installedByName().get(entry ? entry.name : "");
      const meta = (inst && inst.Metadata) || {};
      const name = (entry && entry.name) || (inst && inst.Name);
      const gallery = entry || entries.find((e) => e.name === name) || {};
      const caps = gallery.capabilities && Object.keys(gallery.capabilities).length
        ? el("ul", {}, Object.entries(gallery.capabilities).map(([cap, target]) => el("li", {}, el("code", {}, cap), ` → ${target}`)))
        : null;
      const types = typesOf(gallery.name ? gallery : { name, alias: meta.alias });
      openInfo(name, details([
        ["Name", name],
        ["Description", gallery.description],
        ["Type", types.map((t) => TYPE_LABEL[t]).join(", ") || "other"],
        ["Gallery", gallery.gallery || meta.gallery],
        ["URI", gallery.uri ? el("code", {}, gallery.uri) : (meta.uri ? el("code", {}, meta.uri) : (gallery.is_meta ? "meta backend (resolved per host)" : ""))],
        ["Alias", gallery.alias || meta.alias],
        ["Tags", (gallery.tags || []).join(", ")],
        ["License", gallery.license],
        ["Version", gallery.version || meta.version],
        ["Links", links(gallery.urls)],
        ["Mirrors", links(gallery.mirrors)],
        ["Capabilities", caps],
        ["Installed", inst ? "yes" : "no"],
        ["Installed digest", meta.digest ? el("code", {}, meta.digest) : ""],
        ["Installed at", formatDate(meta.installed_at)],
        ["Capability", meta.capability],
        ["Meta backend for", meta.meta_backend_for],
        ["Run file", inst && inst.RunFile ? el("code", {}, inst.RunFile) : ""],
        ["System backend", inst && inst.IsSystem ? "yes (read-only)" : ""],
      ]));
    }

    function renderInstalled() {
      const list = $("#installed-list");
      list.replaceChildren();
      $("#installed-count").textContent = installed.length ? `(${installed.length})` : "";
      if (!installed.length) {
        list.append(el("p", { class: "empty", id: "no-backends" },
          "No backends installed. Install one from the gallery below, or by URI with the manual install form."));
        return;
      }
      for (const backend of installed) {
        const meta = backend.Metadata || {};
        const bits = [meta.alias && `alias ${meta.alias}`, meta.meta_backend_for && `meta → ${meta.meta_backend_for}`,
          meta.version && `v${meta.version}`, meta.installed_at && `installed ${new Date(meta.installed_at).toLocaleString()}`,
          meta.digest && meta.digest.slice(0, 19)].filter(Boolean);
        const job = el("div", { class: "job" });
        renderJob(job, jobs.get(rowJobs.get(backend.Name)), "Delete");
        const remove = el("button", { type: "button", class: "btn btn-danger btn-small delete",
          disabled: backend.IsSystem,
          onclick: async () => {
            if (!window.confirm(`Delete ${backend.Name}?`)) return;
            try {
              const id = (await postJSON(`/backends/delete/${encodeURIComponent(backend.Name)}`, {})).id;
              const entry = entries.find((e) => e.name === backend.Name);
              if (entry) catalog.jobOf.set(catalog.keyOf(entry), id);
              rowJobs.set(backend.Name, id);
              jobs.watch(id, `/backends/jobs/${id}`, "delete");
            } catch (error) {
              renderJob(job, { processed: true, error: error.message }, "Delete");
            }
          } }, labelled("Delete", backend.Name));
        list.append(el("div", { class: "row", dataset: { name: backend.Name } },
          el("span", { class: "name" }, backend.Name),
          backend.IsMeta ? el("span", { class: "badge" }, "meta") : null,
          backend.IsSystem ? el("span", { class: "badge" }, "system") : null,
          el("span", { class: "meta" }, bits.join(" · ")),
          el("span", { class: "actions" },
            el("button", { type: "button", class: "btn btn-small info",
              onclick: () => backendInfo(null, backend) }, labelled("Details", `of ${backend.Name}`)),
            remove),
          job));
      }
    }

    function galleryNotes(galleries) {
      const notes = $("#gallery-notes");
      notes.replaceChildren();
      if (!galleries.length) {
        notes.append(el("p", { class: "empty", id: "no-gallery" },
          "No backend gallery configured. Set LOCALAI_BACKEND_GALLERIES to a JSON list of {\"name\", \"url\"}, ",
          "or install a backend by URI below."));
      }
      for (const g of galleries.filter((g) => g.error)) {
        notes.append(el("p", { class: "notice error", role: "alert" }, `Gallery ${g.name} (${g.url}) could not be read: ${g.error}`));
      }
    }

    let refreshTimer = null;
    function scheduleRefresh() {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(refresh, 150);
    }

    async function refresh(withGalleries = false) {
      const settled = catalog.finishedJobs();
      try {
        const [available, installedNow, galleries] = await Promise.all([
          getJSON("/backends/available"), getJSON("/backends"), withGalleries ? getJSON("/backends/galleries") : null]);
        installed = installedNow;
        entries = available;
        if (galleries) galleryNotes(galleries);
        show($("#load-error"), "");
        renderInstalled();
        catalog.setEntries(available, galleries && !galleries.length
          ? "No backend gallery configured." : "The configured galleries list no backends.", settled);
      } catch (error) {
        show($("#load-error"), `Could not load backends: ${error.message}`);
      }
    }

    $("#manual-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { uri: $("#manual-uri").value.trim() };
      const name = $("#manual-name").value.trim();
      const alias = $("#manual-alias").value.trim();
      if (name) body.name = name;
      if (alias) body.alias = alias;
      const box = $("#manual-status");
      box.replaceChildren(el("span", { class: "msg" }, "Starting install…"));
      try {
        const reply = await postJSON("/backends/apply", body);
        manualJob = reply.id;
        jobs.watch(reply.id, `/backends/jobs/${reply.id}`);
      } catch (error) {
        renderJob(box, { processed: true, error: error.message }, "Install");
      }
    });

    await refresh(true);
  }

  // -- page: models -----------------------------------------------------------------------------

  async function modelsPage() {
    let installed = [];
    let manualJob = null;
    const rowJobs = new Map(); // installed model name -> its delete job id
    const jobs = new Jobs("/models/events", (status) => {
      catalog.jobChanged(status);
      if (status.id === manualJob) renderJob($("#manual-status"), status, "Install");
      for (const [name, id] of rowJobs) {
        const box = document.querySelector(`#installed-list .row[data-name="${CSS.escape(name)}"] .job`);
        if (id === status.id && box) renderJob(box, status, "Delete");
      }
      if (status.processed) scheduleRefresh();
    });
    const installedNames = () => new Set(installed.map((m) => m.id));

    const catalog = new Catalog({
      kind: "models",
      jobs,
      keyOf: (e) => (e.gallery ? `${e.gallery}@${e.name}` : e.name),
      isInstalled: (e) => Boolean(e.installed),
      install: async (e) => (await postJSON("/models/apply", { id: e.gallery ? `${e.gallery}@${e.name}` : e.name })).uuid,
      remove: async (e) => (await postJSON(`/models/delete/${encodeURIComponent(e.name)}`, {})).uuid,
      statusPath: (id) => `/models/jobs/${id}`,
      ownsKind: (kind) => String(kind).startsWith("model-"),
      info: (e) => modelInfo(e),
      describe: (e) => [e.license ? el("span", { class: "badge" }, e.license) : null,
        e.gallery ? el("span", { class: "badge" }, e.gallery) : null],
    });

    function modelInfo(entry) {
      const files = (entry.files || []).length
        ? el("ul", {}, entry.files.map((f) => el("li", {}, el("code", {}, f.filename), " ← ", el("code", {}, f.uri),
          f.sha256 ? el("div", { class: "muted mono" }, `sha256 ${f.sha256}`) : null)))
        : null;
      const model = installed.find((m) => m.id === entry.name);
      openInfo(entry.name, details([
        ["Name", entry.name],
        ["Description", entry.description],
        ["Type", typesOf(entry).map((t) => TYPE_LABEL[t]).join(", ") || "other"],
        ["Gallery", entry.gallery],
        ["Base config", entry.url ? el("code", {}, entry.url) : ""],
        ["Tags", (entry.tags || []).join(", ")],
        ["License", entry.license],
        ["Links", links(entry.urls)],
        ["Files", files],
        ["Installed", entry.installed ? "yes" : "no"],
        ["Backend", model && model.backend],
        ["Usecases", model && (model.usecases || []).join(", ")],
      ]));
    }

    const TRY = [["chat", "chat", "Chat"], ["completion", "chat", "Chat"], ["image", "images", "Images"],
      ["tts", "tts", "Speech"], ["transcript", "transcribe", "Transcribe"]];

    function renderInstalled() {
      const list = $("#installed-list");
      list.replaceChildren();
      $("#installed-count").textContent = installed.length ? `(${installed.length})` : "";
      if (!installed.length) {
        list.append(el("p", { class: "empty", id: "no-models" },
          "No models installed. Install one from the gallery below, or put a model YAML in the models directory."));
        return;
      }
      for (const model of installed) {
        const usecases = model.usecases || [];
        const pages = new Map();
        for (const [usecase, page, label] of TRY) if (usecases.includes(usecase)) pages.set(page, label);
        const job = el("div", { class: "job" });
        renderJob(job, jobs.get(rowJobs.get(model.id)), "Delete");
        list.append(el("div", { class: "row", dataset: { name: model.id } },
          el("span", { class: "name" }, model.id),
          el("span", { class: "badge backend", title: "backend" }, model.backend || "no backend"),
          el("span", { class: "badges usecases" }, usecases.map((u) => el("span", { class: "badge usecase" }, u))),
          el("span", { class: "meta" }),
          el("span", { class: "actions" },
            [...pages].map(([page, label]) => el("a", { class: "btn btn-small",
              href: `/ui/${page}?model=${encodeURIComponent(model.id)}` }, labelled(label, `with ${model.id}`))),
            el("button", { type: "button", class: "btn btn-danger btn-small delete",
              onclick: async () => {
                if (!window.confirm(`Delete ${model.id} and its files?`)) return;
                try {
                  const id = (await postJSON(`/models/delete/${encodeURIComponent(model.id)}`, {})).uuid;
                  rowJobs.set(model.id, id);
                  jobs.watch(id, `/models/jobs/${id}`, "model-delete");
                } catch (error) {
                  const hint = error.status === 404 ? " (only models installed from a gallery or URI can be deleted here; remove its YAML from the models directory)" : "";
                  renderJob(job, { processed: true, error: error.message + hint }, "Delete");
                }
              } }, labelled("Delete", model.id))),
          job));
      }
    }

    function galleryNotes(galleries) {
      const notes = $("#gallery-notes");
      notes.replaceChildren();
      if (!galleries.length) {
        notes.append(el("p", { class: "empty", id: "no-gallery" },
          "No model gallery configured. Set LOCALAI_GALLERIES to a JSON list of {\"name\", \"url\"}, or install by URI below."));
      }
      for (const g of galleries.filter((g) => g.error)) {
        notes.append(el("p", { class: "notice error", role: "alert" }, `Gallery ${g.name} (${g.url}) could not be read: ${g.error}`));
      }
    }

    let refreshTimer = null;
    function scheduleRefresh() {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(refresh, 150);
    }

    async function refresh(withGalleries = false) {
      const settled = catalog.finishedJobs();
      try {
        const [available, models, galleries] = await Promise.all([
          getJSON("/models/available"), getJSON("/v1/models"), withGalleries ? getJSON("/models/galleries") : null]);
        installed = models.data || [];
        if (galleries) galleryNotes(galleries);
        show($("#load-error"), "");
        renderInstalled();
        const names = installedNames();
        catalog.setEntries(available.map((e) => ({ ...e, installed: e.installed || names.has(e.name) })),
          galleries && !galleries.length ? "No model gallery configured." : "The configured galleries list no models.", settled);
      } catch (error) {
        show($("#load-error"), `Could not load models: ${error.message}`);
      }
    }

    $("#manual-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = { id: $("#manual-uri").value.trim() };
      const name = $("#manual-name").value.trim();
      if (name) body.name = name;
      const box = $("#manual-status");
      box.replaceChildren(el("span", { class: "msg" }, "Starting install…"));
      try {
        const reply = await postJSON("/models/apply", body);
        manualJob = reply.uuid;
        jobs.watch(reply.uuid, `/models/jobs/${reply.uuid}`);
      } catch (error) {
        renderJob(box, { processed: true, error: error.message }, "Install");
      }
    });

    await refresh(true);
  }

  // -- try-it pages -------------------------------------------------------------------------------

  /** Fill the model picker with models that have the page's usecase; false when there are none. */
  async function loadModelPicker() {
    const select = $("#model");
    const usecase = select.dataset.usecase;
    const storageKey = `localai-model-${usecase}`;
    let models = [];
    try {
      models = (await getJSON("/v1/models")).data || [];
    } catch (error) {
      select.replaceChildren(el("option", { value: "" }, "could not load models"));
      throw error;
    }
    const fits = models.filter((m) => !(m.usecases || []).length || m.usecases.includes(usecase));
    select.replaceChildren(...fits.map((m) => el("option", { value: m.id }, m.backend ? `${m.id} (${m.backend})` : m.id)));
    const wanted = new URLSearchParams(window.location.search).get("model") || (() => {
      try { return localStorage.getItem(storageKey); } catch { return null; }
    })();
    if (wanted && fits.some((m) => m.id === wanted)) select.value = wanted;
    select.addEventListener("change", () => { try { localStorage.setItem(storageKey, select.value); } catch { /* ignore */ } });
    $("#no-models").hidden = fits.length > 0;
    const submit = $("main form button[type=submit]");
    if (submit && !fits.length) submit.disabled = true;
    return fits.length > 0;
  }

  function busy(button, on, label) {
    if (on) { button.dataset.label = button.textContent; button.textContent = label; }
    else if (button.dataset.label) button.textContent = button.dataset.label;
    button.disabled = on;
  }

  async function chatPage() {
    const messagesBox = $("#messages");
    const form = $("#chat-form");
    const prompt = $("#prompt");
    const send = $("#send");
    const stop = $("#stop");
    const errorBox = $("#chat-error");
    let history = [];
    let controller = null;

    function bubble(role, text) {
      $("#chat-empty")?.remove();
      const body = el("span", { class: "text" }, text);
      const node = el("div", { class: `msg-bubble ${role}` }, el("span", { class: "who" }, role === "user" ? "You" : "Assistant"), body);
      messagesBox.append(node);
      messagesBox.scrollTop = messagesBox.scrollHeight;
      return { node, body };
    }

    prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    stop.addEventListener("click", () => controller && controller.abort());
    $("#clear-chat").addEventListener("click", () => {
      if (controller) controller.abort();
      history = [];
      messagesBox.replaceChildren(el("p", { class: "empty", id: "chat-empty" }, "Send a message to start."));
      show(errorBox, "");
      prompt.focus();
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = prompt.value.trim();
      const model = $("#model").value;
      if (!text || !model || controller) return;
      show(errorBox, "");
      prompt.value = "";
      history.push({ role: "user", content: text });
      bubble("user", text);
      const reply = bubble("assistant", "");
      reply.node.classList.add("streaming");
      controller = new AbortController();
      send.disabled = true;
      stop.disabled = false;
      let content = "";
      try {
        const body = { model, messages: history, stream: true };
        const maxTokens = parseInt($("#max-tokens").value, 10);
        const temperature = parseFloat($("#temperature").value);
        if (maxTokens > 0) body.max_tokens = maxTokens;
        if (!Number.isNaN(temperature)) body.temperature = temperature;
        const response = await api("/v1/chat/completions", {
          method: "POST", headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify(body), signal: controller.signal,
        });
        for await (const { event: kind, data } of readEvents(response)) {
          if (data === "[DONE]") break;
          const chunk = JSON.parse(data);
          if (kind === "error" || chunk.error) throw new Error((chunk.error && chunk.error.message) || "the stream failed");
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          if (delta && delta.content) {
            content += delta.content;
            reply.body.textContent = content;
            messagesBox.scrollTop = messagesBox.scrollHeight;
          }
        }
      } catch (error) {
        if (error.name !== "AbortError") show(errorBox, `Chat failed: ${error.message}`);
      } finally {
        reply.node.classList.remove("streaming");
        if (content) history.push({ role: "assistant", content });
        else if (!reply.body.textContent) reply.body.textContent = "(no reply)";
        controller = null;
        send.disabled = false;
        stop.disabled = true;
        prompt.focus();
      }
    });
    await loadModelPicker();
  }

  async function imagesPage() {
    const form = $("#image-form");
    const results = $("#image-results");
    const button = $("#generate");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const prompt = $("#prompt").value.trim();
      if (!prompt) return;
      const body = { model: $("#model").value, prompt, size: $("#size").value, response_format: "b64_json" };
      const steps = parseInt($("#steps").value, 10);
      const seed = parseInt($("#seed").value, 10);
      if (steps > 0) body.step = steps;
      if (seed >= 0) body.seed = seed;
      show($("#image-error"), "");
      busy(button, true, "Generating…");
      const started = performance.now();
      $("#image-status").textContent = "Generating…";
      try {
        const reply = await postJSON("/v1/images/generations", body);
        results.querySelector(".empty")?.remove();
        for (const item of reply.data || []) {
          const src = item.b64_json ? `data:image/png;base64,${item.b64_json}` : item.url;
          results.prepend(el("figure", {},
            el("img", { src, alt: `Generated image: ${prompt}`, class: "generated" }),
            el("figcaption", {}, `${prompt} · ${body.size} · `, el("a", { href: src, download: "image.png" }, "download"))));
        }
        $("#image-status").textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
      } catch (error) {
        $("#image-status").textContent = "";
        show($("#image-error"), `Image generation failed: ${error.message}`);
      } finally {
        busy(button, false);
      }
    });
    await loadModelPicker();
  }

  async function ttsPage() {
    const form = $("#tts-form");
    const results = $("#tts-results");
    const button = $("#speak");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("#text").value.trim();
      if (!input) return;
      const body = { model: $("#model").value, input, response_format: "wav" };
      const voice = $("#voice").value.trim();
      const speed = parseFloat($("#speed").value);
      if (voice) body.voice = voice;
      if (speed > 0) body.speed = speed;
      show($("#tts-error"), "");
      busy(button, true, "Speaking…");
      $("#tts-status").textContent = "Generating speech…";
      try {
        const response = await api("/v1/audio/speech", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        const blob = await response.blob();
        const url = URL.createObjectURL(blob);
        results.querySelector(".empty")?.remove();
        const audio = el("audio", { controls: true, src: url, preload: "auto", "aria-label": `Speech: ${input}` });
        results.prepend(el("div", { class: "row" },
          el("span", { class: "meta" }, input),
          el("span", { class: "actions" }, el("a", { class: "btn btn-small", href: url, download: "speech.wav" }, "Download")),
          audio));
        $("#tts-status").textContent = `Done: ${formatBytes(blob.size)} of ${blob.type || "audio"}.`;
        audio.play().catch(() => { /* autoplay may be blocked; the controls are there */ });
      } catch (error) {
        $("#tts-status").textContent = "";
        show($("#tts-error"), `Speech failed: ${error.message}`);
      } finally {
        busy(button, false);
      }
    });
    await loadModelPicker();
  }

  async function transcribePage() {
    const form = $("#transcribe-form");
    const button = $("#transcribe");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const file = $("#file").files[0];
      if (!file) return;
      const data = new FormData();
      data.append("model", $("#model").value);
      data.append("file", file, file.name);
      data.append("response_format", "json");
      const language = $("#language").value.trim();
      if (language) data.append("language", language);
      show($("#transcribe-error"), "");
      busy(button, true, "Transcribing…");
      const started = performance.now();
      $("#transcribe-status").textContent = `Uploading ${file.name} (${formatBytes(file.size)})…`;
      try {
        const reply = await (await api("/v1/audio/transcriptions", { method: "POST", body: data })).json();
        $("#transcript").replaceChildren(el("p", { id: "transcript-text" }, reply.text || "(no speech found)"));
        $("#transcribe-status").textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
      } catch (error) {
        $("#transcribe-status").textContent = "";
        show($("#transcribe-error"), `Transcription failed: ${error.message}`);
      } finally {
        busy(button, false);
      }
    });
    await loadModelPicker();
  }

  // -- start ------------------------------------------------------------------------------------

  const PAGES = {
    backends: backendsPage, models: modelsPage, chat: chatPage, images: imagesPage, tts: ttsPage,
    transcribe: transcribePage,
  };

  document.addEventListener("DOMContentLoaded", () => {
    $("#api-key-button")?.addEventListener("click", async () => {
      if (await askKey("manage")) window.location.reload();
    });
    const run = PAGES[document.body.dataset.page];
    if (run) {
      run().catch((error) => {
        const box = $("#load-error") || $(".error[role=alert]");
        if (box) show(box, error.message);
        console.error(error);
      });
    }
  });
})();
