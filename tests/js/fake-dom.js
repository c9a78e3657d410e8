// The smallest document the modules' DOM code needs, for node. Setting innerHTML,
// outerHTML or calling insertAdjacentHTML throws: text must arrive as text.
'use strict';

class FakeNode {
  constructor(doc, tag) {
    this.ownerDocument = doc;
    this.tagName = tag.toUpperCase();
    this.className = '';
    this.children = [];
    this.dataset = {};
    this.attributes = {};
    this.style = {};
    this.hidden = false;
    this.listeners = {};
    this.parentNode = null;
    this.clientWidth = 600;
    this._text = '';
    this.classList = {
      toggle: (cls, on) => {
        const set = new Set(this.className.split(' ').filter(Boolean));
        if (on === undefined ? !set.has(cls) : on) set.add(cls); else set.delete(cls);
        this.className = [...set].join(' ');
      },
      contains: (cls) => this.className.split(' ').includes(cls),
      remove: (cls) => this.classList.toggle(cls, false),
    };
  }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(''); }
  set textContent(v) { this._text = String(v); this.children = []; }
  set innerHTML(_) { throw new Error('innerHTML used'); }
  set outerHTML(_) { throw new Error('outerHTML used'); }
  insertAdjacentHTML() { throw new Error('insertAdjacentHTML used'); }
  appendChild(c) { c.parentNode = this; this.children.push(c); return c; }
  replaceChildren(...cs) { this._text = ''; this.children = []; cs.forEach((c) => this.appendChild(c)); }
  setAttribute(k, v) {
    if (/^on/i.test(k)) throw new Error('inline handler ' + k);
    this.attributes[k] = String(v);
  }
  addEventListener(type, fn) { (this.listeners[type] = this.listeners[type] || []).push(fn); }
  getBoundingClientRect() { return { left: 0, top: 0, width: this.clientWidth, height: 100 }; }
  // Every descendant, depth first (the node itself excluded).
  all() { return this.children.flatMap((c) => [c, ...c.all()]); }
}

class FakeText extends FakeNode {
  constructor(doc, text) { super(doc, '#text'); this._text = String(text); }
}

class FakeDocument {
  constructor() { this.byId = {}; }
  createElement(tag) { return new FakeNode(this, tag); }
  createTextNode(text) { return new FakeText(this, text); }
  getElementById(id) { return this.byId[id] || null; }
  querySelectorAll() { return []; }
  querySelector() { return null; }
  add(id, tag) { const n = new FakeNode(this, tag || 'div'); this.byId[id] = n; return n; }
}

module.exports = { FakeDocument, FakeNode };
