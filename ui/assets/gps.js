// GPS browser glue: what the server-rendered components need the browser to do
// itself. Uploads go straight to the REST API (real per-file progress, no file
// bytes through the LiveView socket); regions are drawn and keys read here and
// reported to the component that asked, through its eval channel.
window.GPS = window.GPS || { channels: {} };

(function () {
  const csrf = document.querySelector('meta[name="gps-csrf"]').content;
  const report = (zone, message) => {
    const channel = GPS.channels[zone];
    if (channel) channel(message);
  };

  // In-app links: the component navigates; the browser must not load the page.
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-nav]");
    if (link && event.button === 0 && !event.metaKey && !event.ctrlKey && !event.shiftKey) {
      event.preventDefault();
    }
    // File inputs open the browser's own file dialog (the LiveView interpreter
    // would otherwise swallow the click).
    if (event.target.matches && event.target.matches("input.gps-file")) {
      event.stopPropagation();
    }
  }, true);

  function upload(zone, url, field, file, extra) {
    const form = new FormData();
    for (const [name, value] of extra) form.append(name, value);
    form.append(field, file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", url);
    request.setRequestHeader("x-csrf-token", csrf);
    let last = 0;
    request.upload.onprogress = (event) => {
      const now = Date.now();
      if (now - last > 150 || event.loaded === event.total) {
        last = now;
        report(zone, { file: file.name, phase: "progress", loaded: event.loaded, total: event.total });
      }
    };
    request.onload = () => report(zone, { file: file.name, phase: "done", status: request.status, body: request.responseText });
    request.onerror = () => report(zone, { file: file.name, phase: "done", status: 0, body: "" });
    request.send(form);
  }

  function sendFiles(zoneElement, files) {
    const zone = zoneElement.dataset.zone;
    const url = zoneElement.dataset.url;
    const field = zoneElement.dataset.field || "file";
    for (const file of files) {
      report(zone, { file: file.name, phase: "queued", loaded: 0, total: file.size });
    }
    for (const file of files) upload(zone, url, field, file, []);
  }

  // A whole form of files in one request (a catalog and its image ZIP).
  function submitForm(zoneElement) {
    const zone = zoneElement.dataset.zone;
    const form = new FormData();
    let label = "";
    for (const input of zoneElement.querySelectorAll("input.gps-file")) {
      for (const file of input.files) {
        form.append(input.name, file, file.name);
        label = label || file.name;
      }
    }
    if (!label) {
      report(zone, { file: "", phase: "done", status: 400, body: JSON.stringify({ detail: "choose a catalog file (CSV or JSON Lines) first", field: "catalog" }) });
      return;
    }
    const request = new XMLHttpRequest();
    request.open("POST", zoneElement.dataset.url);
    request.setRequestHeader("x-csrf-token", csrf);
    request.upload.onprogress = (event) => report(zone, { file: label, phase: "progress", loaded: event.loaded, total: event.total });
    request.onload = () => report(zone, { file: label, phase: "done", status: request.status, body: request.responseText });
    request.onerror = () => report(zone, { file: label, phase: "done", status: 0, body: "" });
    request.send(form);
  }

  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!input.matches || !input.matches("input.gps-file")) return;
    const zone = input.closest(".gps-dropzone");
    if (zone && zone.dataset.mode !== "form") {
      sendFiles(zone, Array.from(input.files));
      input.value = "";
    }
  }, true);
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("button.gps-submit");
    if (button) submitForm(button.closest(".gps-dropzone"));
  });
  document.addEventListener("dragover", (event) => {
    const zone = event.target.closest && event.target.closest(".gps-dropzone");
    if (zone) { event.preventDefault(); zone.classList.add("over"); }
  });
  document.addEventListener("dragleave", (event) => {
    const zone = event.target.closest && event.target.closest(".gps-dropzone");
    if (zone) zone.classList.remove("over");
  });
  document.addEventListener("drop", (event) => {
    const zone = event.target.closest && event.target.closest(".gps-dropzone");
    if (!zone) return;
    event.preventDefault();
    zone.classList.remove("over");
    if (zone.dataset.mode !== "form") sendFiles(zone, Array.from(event.dataTransfer.files));
  });

  // Drawing a region on an image: fractions of the image's box.
  let drawing = null;
  document.addEventListener("mousedown", (event) => {
    const area = event.target.closest && event.target.closest(".gps-region");
    if (!area || event.button !== 0) return;
    event.preventDefault();
    const box = area.getBoundingClientRect();
    drawing = { area, box, x: (event.clientX - box.left) / box.width, y: (event.clientY - box.top) / box.height };
  });
  document.addEventListener("mousemove", (event) => {
    if (!drawing) return;
    const { box, x, y } = drawing;
    const cx = Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1);
    const cy = Math.min(Math.max((event.clientY - box.top) / box.height, 0), 1);
    let ghost = drawing.area.querySelector(".ghost");
    if (!ghost) {
      ghost = document.createElement("div");
      ghost.className = "ghost";
      drawing.area.appendChild(ghost);
    }
    ghost.style.left = Math.min(x, cx) * 100 + "%";
    ghost.style.top = Math.min(y, cy) * 100 + "%";
    ghost.style.width = Math.abs(cx - x) * 100 + "%";
    ghost.style.height = Math.abs(cy - y) * 100 + "%";
  });
  document.addEventListener("mouseup", (event) => {
    if (!drawing) return;
    const { area, box, x, y } = drawing;
    drawing = null;
    const ghost = area.querySelector(".ghost");
    if (ghost) ghost.remove();
    const cx = Math.min(Math.max((event.clientX - box.left) / box.width, 0), 1);
    const cy = Math.min(Math.max((event.clientY - box.top) / box.height, 0), 1);
    const region = { x: Math.min(x, cx), y: Math.min(y, cy), width: Math.abs(cx - x), height: Math.abs(cy - y) };
    if (region.width > 0.01 && region.height > 0.01) report(area.dataset.zone, region);
  });

  // Review shortcuts: single keys, never while typing.
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input, textarea, select, [contenteditable]");
    if (typing || event.metaKey || event.ctrlKey || event.altKey) return;
    if (GPS.channels.keys && ["j", "k", "a", "r", "v", "c", "x", "Escape", "ArrowLeft", "ArrowRight"].includes(event.key)) {
      event.preventDefault();
      GPS.channels.keys(event.key);
    }
  });

  // Browser back and forward: the component shows the address's screen.
  window.addEventListener("popstate", () => report("navigation", location.pathname + location.search));

  // A dropped connection: say so, wait for the server, and come back to the
  // same address; the screen's state is read again from the read models.
  function watchConnection() {
    if (!window.ipc || !window.ipc.ws) return setTimeout(watchConnection, 50);
    window.ipc.ws.addEventListener("close", () => {
      const banner = document.getElementById("gps-connection");
      if (banner) banner.hidden = false;
      const retry = () => fetch("/healthz", { cache: "no-store" })
        .then((response) => { if (response.ok) location.reload(); else setTimeout(retry, 1000); })
        .catch(() => setTimeout(retry, 1000));
      setTimeout(retry, 500);
    });
  }
  watchConnection();
})();
