"use strict";
// A minimal .ini reader: [sections], key = value, ; and # comments.
const fs = require("fs");

function readIni(path) {
  const result = {};
  let section = result;
  for (const raw of fs.readFileSync(path, "utf8").split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith(";") || line.startsWith("#")) continue;
    const header = line.match(/^\[(.+)\]$/);
    if (header) {
      section = result[header[1]] = {};
      continue;
    }
    const equals = line.indexOf("=");
    if (equals > 0) section[line.slice(0, equals).trim()] = line.slice(equals + 1).trim();
  }
  return result;
}

module.exports = { readIni };
