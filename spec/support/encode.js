// Reference side of the differential test in spec/encode_spec.lua.
//
// usage: node spec/support/encode.js <file>
//
// <file> holds one hex-encoded UTF-8 byte string per line (an empty line is
// the empty string). For every line this prints encodeURIComponent() of the
// decoded string, one result per line, in the same order. A line that is not
// hex, or whose bytes are not valid UTF-8, prints a line with a space in it,
// which encodeURIComponent can never produce, so the Lua side sees a mismatch
// instead of a silently skipped case.
'use strict';

const fs = require('fs');

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node encode.js <hexfile>\n');
  process.exit(2);
}

const lines = fs.readFileSync(file, 'latin1').split('\n');
if (lines.length > 0 && lines[lines.length - 1] === '') {
  lines.pop(); // the newline that ends the last record
}

const out = lines.map((hex) => {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(hex)) {
    return 'NOT HEX ' + hex;
  }
  const buf = Buffer.from(hex, 'hex');
  const str = buf.toString('utf8');
  // toString() replaces bad sequences with U+FFFD; catch that by round trip.
  if (!Buffer.from(str, 'utf8').equals(buf)) {
    return 'NOT UTF-8 ' + hex;
  }
  return encodeURIComponent(str);
});

process.stdout.write(out.map((line) => line + '\n').join(''));
