"use strict";
// The notes API. Settings come from an .ini file: ./config.ini, or the one named by --config.
const http = require("http");
const path = require("path");
const { readIni } = require("./lib/ini");
const { Store } = require("./lib/store");

const flag = process.argv.indexOf("--config");
const configFile = flag > 0 ? process.argv[flag + 1] : "config.ini";
const settings = readIni(configFile).server;
const store = new Store(path.resolve(path.dirname(configFile), settings.data_dir));

function send(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = "";
    req.on("data", (chunk) => (data += chunk));
    req.on("end", () => {
      try {
        resolve(data ? JSON.parse(data) : {});
      } catch (error) {
        reject(error);
      }
    });
  });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  const match = url.pathname.match(/^\/api\/notes\/(\d+)$/);
  try {
    if (req.method === "GET" && url.pathname === "/api/health") return send(res, 200, { ok: true });
    if (req.method === "GET" && url.pathname === "/api/notes") return send(res, 200, store.all());
    if (req.method === "POST" && url.pathname === "/api/notes") {
      const { text } = await readBody(req);
      if (typeof text !== "string" || !text.trim()) return send(res, 400, { error: "text is required" });
      return send(res, 201, store.add(text.trim()));
    }
    if (match && req.method === "GET") {
      const note = store.all().find((n) => n.id === Number(match[1]));
      return note ? send(res, 200, note) : send(res, 404, { error: "no such note" });
    }
    if (match && req.method === "DELETE") {
      return store.remove(Number(match[1])) ? send(res, 204, {}) : send(res, 404, { error: "no such note" });
    }
    send(res, 404, { error: "not found" });
  } catch (error) {
    send(res, 400, { error: String(error.message || error) });
  }
});

process.on("SIGTERM", () => server.close(() => process.exit(0)));
server.listen(Number(settings.port), settings.host, () => {
  console.log(`notes: listening on http://${settings.host}:${settings.port}`);
});
