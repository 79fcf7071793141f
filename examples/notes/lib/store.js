"use strict";
// Notes kept in one JSON file in the data folder, replaced atomically on every change.
const fs = require("fs");
const path = require("path");

class Store {
  constructor(folder) {
    fs.mkdirSync(folder, { recursive: true });
    this.file = path.join(folder, "notes.json");
  }

  all() {
    try {
      return JSON.parse(fs.readFileSync(this.file, "utf8"));
    } catch (error) {
      if (error.code === "ENOENT") return [];
      throw error;
    }
  }

  save(notes) {
    const temp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(temp, JSON.stringify(notes));
    fs.renameSync(temp, this.file);
  }

  add(text) {
    const notes = this.all();
    const note = { id: Math.max(0, ...notes.map((n) => n.id)) + 1, text };
    this.save([...notes, note]);
    return note;
  }

  remove(id) {
    const notes = this.all();
    const kept = notes.filter((n) => n.id !== id);
    this.save(kept);
    return kept.length < notes.length;
  }
}

module.exports = { Store };
