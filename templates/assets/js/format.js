/* format.js: every number, duration and share the page's script shows is formatted here.
 *
 * The payload carries raw numbers. The tables are rendered in Python with the same rules
 * (asgiprof/reporters/html.py format_ms, format_pct, format_count), and a worker switch
 * rewrites their cells from here, so both sides must agree to the character:
 * tests/unit/test_report_js.py compares them. Python rounds exact binary ties to even,
 * toFixed and Math.round round them up: `fixed` is toFixed with Python's rounding.
 */
(function (A) {
  'use strict';

  // x.toFixed(digits), but an exact tie (0.25 to one digit) goes to the even digit.
  function fixed(x, digits) {
    var longer = x.toFixed(digits + 1);
    if (longer.charAt(longer.length - 1) !== '5' || Number(longer) !== x) return x.toFixed(digits);
    var frac = longer.slice(longer.indexOf('.') + 1);
    // The longer decimal equals x exactly only if its fraction is dyadic.
    if (Number(frac) % Math.pow(5, digits + 1) !== 0) return x.toFixed(digits);
    var kept = longer.slice(0, -1);
    var last = kept.charAt(kept.length - 1) === '.' ? kept.charAt(kept.length - 2) : kept.charAt(kept.length - 1);
    if (Number(last) % 2 === 1) return x.toFixed(digits); // away from zero: up to even
    return kept.charAt(kept.length - 1) === '.' ? kept.slice(0, -1) : kept;
  }

  function ms(v) {
    if (v < 10) return fixed(v, 1) + ' ms';
    if (v < 1000) return fixed(v, 0) + ' ms';
    if (v < 60000) return fixed(v / 1000, v < 10000 ? 2 : 1) + ' s';
    var total = Number(fixed(v / 1000, 0));
    var sec = total % 60;
    return Math.floor(total / 60) + ' min ' + (sec < 10 ? '0' : '') + sec + ' s';
  }

  function pct(share) {
    if (share > 0 && share < 0.001) return '<0.1%';
    return fixed(share * 100, 1) + '%';
  }

  // Thin spaces group digits: readable and locale-neutral (as format_count).
  function count(n) { return n.toLocaleString('en-US').replace(/,/g, '\u2009'); }

  // Commas group digits in charts and tooltips (sample counts, resource values).
  function grouped(n) { return Math.round(n).toLocaleString('en-US'); }

  // A moment on the time axis: "7 s", "2.5 s", "1:05".
  function seconds(s) {
    if (s >= 60) {
      var m = Math.floor(s / 60);
      var r = Math.round(s - m * 60);
      if (r === 60) { m += 1; r = 0; }
      return m + ':' + (r < 10 ? '0' : '') + r;
    }
    return (s < 10 && s % 1 !== 0 ? s.toFixed(1) : Math.round(s)) + ' s';
  }

  // A resource reading: MiB (GiB from 1024 MiB) or a plain count; null is a missed poll.
  function value(v, unit) {
    if (v === null || v === undefined) return '\u2013';
    if (unit === 'MiB') {
      if (Math.abs(v) >= 1024) return (v / 1024).toFixed(2) + ' GiB';
      return (Math.abs(v) < 10 ? v.toFixed(1) : grouped(v)) + ' MiB';
    }
    return grouped(v);
  }

  function axisValue(v, unit) {
    if (unit !== 'MiB') return grouped(v);
    return v >= 10240 ? Math.round(v / 1024) + ' GiB' : (v < 10 && v % 1 ? v.toFixed(1) : Math.round(v)) + ' MiB';
  }

  function rate(v, unit) {
    var flat = Math.abs(v) < (unit === 'MiB' ? 0.05 : 0.5); // shows as zero: no sign
    var sign = flat ? '\u00b1' : (v > 0 ? '+' : '\u2212');
    return sign + value(Math.abs(v), unit) + '/min';
  }

  // Samples behind a duration at the sampling rate ("" when the rate is unknown).
  function samples(v, rateHz) {
    return rateHz ? ' \u00b7 \u2248' + grouped(v * rateHz / 1000) + ' samples' : '';
  }

  function basename(path) {
    var i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
    return i >= 0 ? path.slice(i + 1) : path;
  }

  A.format = {
    fixed: fixed, ms: ms, pct: pct, count: count, grouped: grouped, seconds: seconds,
    value: value, axisValue: axisValue, rate: rate, samples: samples, basename: basename
  };
})(globalThis.AsgiprofReport = globalThis.AsgiprofReport || {});
