//! Joining whole raw deflate streams into one, to the bit.
//!
//! libdeflate compresses a whole buffer into a complete stream: its last
//! block is marked final and its end-of-block code ends anywhere in the
//! last byte. A non-last piece of [`super::gzip::ParallelGzip`]'s single
//! stream needs the opposite: no final mark, and an end on a byte boundary
//! so the next piece can follow. [`unfinish`] rewrites the stream so: it
//! clears the final block's mark and appends an empty stored block (three
//! zero header bits, zero padding to the byte, `00 00 FF FF`), the very
//! marker a zlib sync flush writes.
//!
//! Where the final block starts and where its last code ends is known only
//! by walking every block's codes, so [`final_block`] decodes the whole
//! stream without producing output. It also counts the bytes the codes
//! describe: a stream that does not describe exactly the piece it was made
//! from is refused, and the caller compresses that piece another way.
//! That count is the walk's only check of meaning: it does not compare
//! distances with what came before, nor refuse incomplete codes, which an
//! inflater would. The streams it reads are libdeflate's, of the very
//! bytes counted; the tests inflate what the walk joins.

/// Bit positions (from the first byte's least significant bit) of a raw
/// deflate stream's final block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FinalBlock {
    /// The final block's first header bit (its BFINAL bit).
    pub(super) start: usize,
    /// The bit after the final block's end-of-block code.
    pub(super) end: usize,
}

/// Rewrites `stream`, a complete raw deflate stream of `len` bytes of data,
/// into a non-final piece that ends on a byte boundary. False (and
/// `stream` untouched) when it is not such a stream.
pub(super) fn unfinish(stream: &mut Vec<u8>, len: usize) -> bool {
    let Some(f) = final_block(stream, len) else {
        return false;
    };
    if let Some(b) = stream.get_mut(f.start / 8) {
        *b &= !(1u8 << (f.start % 8));
    }
    // The empty stored block's header (BFINAL 0, BTYPE 00) is three zero
    // bits, then zeros to the byte boundary: the padding after `end` is
    // already zero (checked by final_block), at most one more byte is
    // needed.
    stream.resize((f.end + 3).div_ceil(8), 0);
    stream.extend_from_slice(&[0, 0, 0xff, 0xff]);
    true
}

/// Where the final block of `stream` starts and ends, if `stream` is a raw
/// deflate stream describing exactly `len` bytes and ending, zero-padded,
/// in the byte where its final block ends. None for anything else.
pub(super) fn final_block(stream: &[u8], len: usize) -> Option<FinalBlock> {
    let mut bits = Bits::new(stream);
    let mut produced = 0usize;
    let mut fixed: Option<(Table, Table)> = None;
    loop {
        let start = bits.position();
        let last = bits.take(1)? == 1;
        match bits.take(2)? {
            0 => produced += stored(&mut bits)?,
            1 => {
                let (lit, dist) = fixed.get_or_insert_with(fixed_tables);
                produced += codes(&mut bits, lit, dist)?;
            }
            2 => {
                let (lit, dist) = dynamic_tables(&mut bits)?;
                produced += codes(&mut bits, &lit, &dist)?;
            }
            _ => return None,
        }
        if produced > len {
            return None;
        }
        if last {
            let end = bits.position();
            let padding_is_zero = stream
                .get(end / 8)
                .is_none_or(|b| end.is_multiple_of(8) || b >> (end % 8) == 0);
            let whole = stream.len() == end.div_ceil(8);
            return (produced == len && whole && padding_is_zero)
                .then_some(FinalBlock { start, end });
        }
    }
}

/// A stored block after its header: its length.
fn stored(bits: &mut Bits) -> Option<usize> {
    bits.align();
    let n = bits.take(16)?;
    let inverse = bits.take(16)?;
    if n != !inverse & 0xffff {
        return None;
    }
    bits.skip_bytes(n as usize)?;
    Some(n as usize)
}

/// Base lengths of length symbols 257..=285, and their extra bits.
const LEN_BASE: [u32; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u32; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Extra bits of distance symbols 0..=29.
const DIST_EXTRA: [u32; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

// A table entry: code length (bits 0-3), extra bits (4-7), then per table:
// the literal/length table's bytes described (8-16) and kind (17-18), the
// others' symbol (8-16). 0: no such code.
const EXTRA_SHIFT: u32 = 4;
const VALUE_SHIFT: u32 = 8;
const LENGTH: u32 = 1 << 17;
const END: u32 = 1 << 18;

/// A literal/length table entry for `symbol`.
fn lit_entry(symbol: usize) -> Option<u32> {
    match symbol {
        0..=255 => Some(1 << VALUE_SHIFT),
        256 => Some(END),
        257..=285 => {
            let i = symbol - 257;
            Some(LENGTH | LEN_BASE[i] << VALUE_SHIFT | LEN_EXTRA[i] << EXTRA_SHIFT)
        }
        _ => None,
    }
}

/// A distance table entry for `symbol`.
fn dist_entry(symbol: usize) -> Option<u32> {
    DIST_EXTRA.get(symbol).map(|&x| x << EXTRA_SHIFT)
}

/// A code-length table entry for `symbol`.
fn symbol_entry(symbol: usize) -> Option<u32> {
    Some((symbol as u32) << VALUE_SHIFT)
}

/// A Huffman-coded block's codes up to its end-of-block: the bytes they
/// describe.
///
/// Literals are walked up to three per lookup (see
/// [`Table::pack_literals`]): the walk costs about a fifth of libdeflate's
/// compression of the same chunk (`bench/deflate.sh`).
fn codes(bits: &mut Bits, lit: &Table, dist: &Table) -> Option<usize> {
    // The reader's state in locals: the loop's chain of dependent steps
    // is then registers only.
    let (data, mut next, mut buf, mut have) = (bits.data, bits.next, bits.buf, bits.have);
    let mut produced = 0usize;
    let result = loop {
        // A symbol is at most 48 bits (15 + 5 extra, distance 15 + 13); a
        // refill leaves at least 56 unless the stream ends.
        if let Some(word) = data.get(next..next + 8) {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            buf |= u64::from_le_bytes(le) << have;
            next += ((63 - have) / 8) as usize;
            have |= 56;
        } else {
            while have <= 56 {
                let Some(&b) = data.get(next) else { break };
                buf |= u64::from(b) << have;
                next += 1;
                have += 8;
            }
        }
        let e = lit.entry(buf);
        if e & END != 0 || e == 0 {
            let l = e & 15;
            if e != 0 && l <= have {
                buf >>= l;
                have -= l;
                break Some(produced);
            }
            break None;
        }
        if e & LENGTH == 0 {
            // One to three literals.
            let used = e & 15;
            if used > have {
                break None;
            }
            buf >>= used;
            have -= used;
            produced += (e >> VALUE_SHIFT) as usize;
            continue;
        }
        let mut used = e & 15;
        let extra_bits = (e >> EXTRA_SHIFT) & 15;
        let extra = (buf >> used) as u32 & ((1 << extra_bits) - 1);
        used += extra_bits;
        produced += ((e >> VALUE_SHIFT) & 0x1ff) as usize + extra as usize;
        let d = dist.entry(buf >> used);
        if d == 0 {
            break None;
        }
        used += (d & 15) + ((d >> EXTRA_SHIFT) & 15);
        if used > have {
            break None;
        }
        buf >>= used;
        have -= used;
    };
    (bits.next, bits.buf, bits.have) = (next, buf, have);
    result
}

/// Primary table widths (zlib's and libdeflate's choices, about).
const LIT_PRIMARY: u32 = 10;
const DIST_PRIMARY: u32 = 8;

/// The fixed code's literal/length and distance tables (RFC 1951 3.2.6).
fn fixed_tables() -> (Table, Table) {
    let mut lit = [8u8; 288];
    lit[144..256].fill(9);
    lit[256..280].fill(7);
    // Both are valid codes, which Table::new always accepts.
    let mut lit = Table::new(&lit, lit_entry, LIT_PRIMARY).unwrap_or_default();
    lit.pack_literals();
    let dist = Table::new(&[5u8; 30], dist_entry, DIST_PRIMARY).unwrap_or_default();
    (lit, dist)
}

/// The order code-length code lengths are sent in.
const CL_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// A dynamic block's header after BTYPE: its two tables.
fn dynamic_tables(bits: &mut Bits) -> Option<(Table, Table)> {
    bits.refill();
    let nlit = bits.take(5)? as usize + 257;
    let ndist = bits.take(5)? as usize + 1;
    let ncl = bits.take(4)? as usize + 4;
    if nlit > 286 || ndist > 30 {
        return None;
    }
    let mut cl = [0u8; 19];
    for &at in &CL_ORDER[..ncl] {
        cl[at] = bits.take(3)? as u8;
    }
    let cl = Table::new(&cl, symbol_entry, 7)?;
    let mut lengths = [0u8; 286 + 30];
    let mut i = 0;
    while i < nlit + ndist {
        bits.refill();
        let (value, repeat) = match cl.decode(bits)? {
            n @ 0..=15 => (n as u8, 1),
            16 => (*lengths.get(i.checked_sub(1)?)?, 3 + bits.take(2)? as usize),
            17 => (0, 3 + bits.take(3)? as usize),
            18 => (0, 11 + bits.take(7)? as usize),
            _ => return None,
        };
        lengths.get_mut(i..i + repeat)?.fill(value);
        i += repeat;
    }
    if i != nlit + ndist || lengths[256] == 0 {
        return None;
    }
    let mut lit = Table::new(&lengths[..nlit], lit_entry, LIT_PRIMARY)?;
    lit.pack_literals();
    Some((
        lit,
        Table::new(&lengths[nlit..nlit + ndist], dist_entry, DIST_PRIMARY)?,
    ))
}

/// Marks a primary entry that points to a subtable: its bits 8-27 are the
/// subtable's offset, its low 4 the subtable's index width.
const SUB: u32 = 1 << 31;

/// A canonical Huffman code as lookup tables indexed by the next stream
/// bits, zlib-style: a primary table for codes up to `primary` bits
/// (small enough to stay in L1), and for each longer code's first
/// `primary` bits a subtable for the rest. An entry is what the entry
/// function gave plus the code's full length in its low 4 bits; 0 where
/// no code matches.
#[derive(Default)]
struct Table {
    primary: u32,
    entries: Vec<u32>,
}

impl Table {
    /// The code of `lengths` (one per symbol, 0 = unused), each code's
    /// entry `entry(symbol)` plus its length (none for a symbol no valid
    /// stream uses: its code then decodes to nothing); None if the lengths
    /// over-subscribe the code space.
    fn new(lengths: &[u8], entry: fn(usize) -> Option<u32>, primary: u32) -> Option<Table> {
        let width = u32::from(lengths.iter().copied().max().unwrap_or(0));
        if width == 0 || width > 15 {
            return (width == 0).then(Table::default);
        }
        let mut count = [0usize; 16];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        let mut next = [0usize; 16];
        let mut code = 0;
        for l in 1..16 {
            code = (code + count[l - 1]) << 1;
            next[l] = code;
            if code + count[l] > 1 << l {
                return None;
            }
        }
        // Each symbol's code, reversed: sent most significant bit first,
        // looked up by stream bits, least significant first.
        let codes: Vec<(usize, u32, usize)> = lengths
            .iter()
            .enumerate()
            .filter(|(_, &l)| l > 0)
            .map(|(symbol, &l)| {
                let c = next[usize::from(l)];
                next[usize::from(l)] += 1;
                let reversed = c.reverse_bits() >> (usize::BITS - u32::from(l));
                (symbol, u32::from(l), reversed)
            })
            .collect();
        let p = primary.min(width);
        let pmask = (1usize << p) - 1;
        let mut t = Table {
            primary: p,
            entries: vec![0; 1 << p],
        };
        // Subtable widths, by first `p` bits.
        let mut sub_width = vec![0u32; 1 << p];
        for &(_, l, r) in codes.iter().filter(|c| c.1 > p) {
            sub_width[r & pmask] = sub_width[r & pmask].max(l - p);
        }
        for (at, &w) in sub_width.iter().enumerate().filter(|(_, &w)| w > 0) {
            t.entries[at] = SUB | (t.entries.len() as u32) << 8 | w;
            t.entries.resize(t.entries.len() + (1 << w), 0);
        }
        for (symbol, l, r) in codes {
            let Some(e) = entry(symbol) else {
                continue; // a code no valid stream uses
            };
            let e = e | l;
            if l <= p {
                for at in (r..1 << p).step_by(1 << l) {
                    t.entries[at] = e;
                }
            } else {
                let sub = t.entries[r & pmask];
                let (offset, w) = (((sub >> 8) & 0xf_ffff) as usize, sub & 15);
                for at in ((r >> p)..1 << w).step_by(1 << (l - p)) {
                    t.entries[offset + at] = e;
                }
            }
        }
        Some(t)
    }

    /// Packs runs of literals into the primary entries of a
    /// literal/length table: where a literal's code leaves room in the
    /// primary bits for one or two more whole literal codes, the entry
    /// describes them all (their count of bytes, their total length), so
    /// one lookup walks up to three literals.
    fn pack_literals(&mut self) {
        let p = self.primary;
        let single = self.entries[..1 << p].to_vec();
        let is_literal = |e: u32| e != 0 && e & (SUB | LENGTH | END) == 0;
        for (at, packed) in self.entries[..1 << p].iter_mut().enumerate() {
            let mut e = single[at];
            if !is_literal(e) {
                continue;
            }
            for _ in 0..2 {
                let used = e & 15;
                let then = single[at >> used];
                if !is_literal(then) || used + (then & 15) > p {
                    break;
                }
                e = (((e >> VALUE_SHIFT) + 1) << VALUE_SHIFT) | (used + (then & 15));
            }
            *packed = e;
        }
    }

    /// The entry of the code `bits` start with (0 if none).
    #[inline(always)]
    fn entry(&self, bits: u64) -> u32 {
        let e = self
            .entries
            .get(bits as usize & ((1 << self.primary) - 1))
            .copied()
            .unwrap_or(0);
        if e & SUB == 0 {
            return e;
        }
        let at = ((e >> 8) & 0xf_ffff) as usize
            + ((bits >> self.primary) as usize & ((1 << (e & 15)) - 1));
        self.entries.get(at).copied().unwrap_or(0)
    }

    /// The next symbol in `bits`, consumed (tables of [`symbol_entry`]).
    fn decode(&self, bits: &mut Bits) -> Option<u16> {
        let e = self.entry(bits.buf);
        let l = e & 15;
        if e == 0 || l > bits.have {
            return None;
        }
        bits.buf >>= l;
        bits.have -= l;
        Some((e >> VALUE_SHIFT) as u16)
    }
}

/// A least-significant-bit-first reader with a 64-bit buffer.
struct Bits<'a> {
    data: &'a [u8],
    /// The next byte to load into `buf`.
    next: usize,
    buf: u64,
    /// Valid bits in `buf` (its low bits).
    have: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits {
            data,
            next: 0,
            buf: 0,
            have: 0,
        }
    }

    /// The stream position of the next unread bit.
    fn position(&self) -> usize {
        self.next * 8 - self.have as usize
    }

    /// Loads whole bytes until at least 56 bits are buffered, or the
    /// stream ends. Bits above `have` may hold the stream's next bits
    /// already (never anything else), so a later load over them is the
    /// same bits again.
    fn refill(&mut self) {
        if let Some(word) = self.data.get(self.next..self.next + 8) {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.buf |= u64::from_le_bytes(le) << self.have;
            self.next += ((63 - self.have) / 8) as usize;
            self.have |= 56;
            return;
        }
        while self.have <= 56 {
            let Some(&b) = self.data.get(self.next) else {
                return;
            };
            self.buf |= u64::from(b) << self.have;
            self.next += 1;
            self.have += 8;
        }
    }

    /// The next `n` (≤ 32) bits without consuming them; zeros past the end.
    fn peek(&self, n: u32) -> u32 {
        (self.buf & ((1u64 << n) - 1)) as u32
    }

    fn consume(&mut self, n: u32) -> Option<()> {
        if n > self.have {
            return None;
        }
        self.buf >>= n;
        self.have -= n;
        Some(())
    }

    /// The next `n` (≤ 32) bits, consumed.
    fn take(&mut self, n: u32) -> Option<u32> {
        if n > self.have {
            self.refill();
        }
        let v = self.peek(n);
        self.consume(n)?;
        Some(v)
    }

    /// Drops the bits left in the current byte.
    fn align(&mut self) {
        let partial = self.have % 8;
        self.buf >>= partial;
        self.have -= partial;
    }

    /// Skips `n` whole bytes (the reader is aligned).
    fn skip_bytes(&mut self, n: usize) -> Option<()> {
        let at = self.position() / 8 + n;
        if at > self.data.len() {
            return None;
        }
        self.next = at;
        self.buf = 0;
        self.have = 0;
        Some(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    fn libdeflate(data: &[u8], level: i32) -> Vec<u8> {
        let lvl = libdeflater::CompressionLvl::new(level).unwrap();
        let mut c = libdeflater::Compressor::new(lvl);
        let mut out = vec![0; c.deflate_compress_bound(data.len())];
        let n = c.deflate_compress(data, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(stream)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Text-like, binary-like, noise and runs: every block type.
    fn samples() -> Vec<Vec<u8>> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let words: Vec<String> = (0..300)
            .map(|i| format!("w{}{}", i * 7919 % 1000, "abcdef".repeat(i % 4)))
            .collect();
        let text: String = (0..60_000)
            .map(|_| words[(noise() % 300) as usize].clone() + " ")
            .collect();
        let binary: Vec<u8> = (0..300_000u32)
            .map(|i| {
                (i.wrapping_mul(2_654_435_761) >> (i % 29)) as u8
                    & if i % 7 == 0 { 0xff } else { 0x0f }
            })
            .collect();
        let random: Vec<u8> = (0..200_000).map(|_| noise() as u8).collect();
        vec![
            Vec::new(),
            b"a".to_vec(),
            b"hello hello hello hello".to_vec(),
            vec![0; 1 << 20],
            text.into_bytes(),
            binary,
            random,
        ]
    }

    #[test]
    fn a_hand_made_stream_is_found_to_the_bit() {
        // One empty fixed-code final block: BFINAL 1, BTYPE 01, then the
        // 7-bit end-of-block code 0000000: 10 bits.
        assert_eq!(
            final_block(&[0x03, 0x00], 0),
            Some(FinalBlock { start: 0, end: 10 })
        );
        // The same after an empty non-final stored block (a sync flush).
        assert_eq!(
            final_block(&[0x00, 0x00, 0x00, 0xff, 0xff, 0x03, 0x00], 0),
            Some(FinalBlock { start: 40, end: 50 })
        );
        // Set padding bits, a trailing byte, the wrong length: refused.
        assert_eq!(final_block(&[0x03, 0x04], 0), None);
        assert_eq!(final_block(&[0x03, 0x00, 0x00], 0), None);
        assert_eq!(final_block(&[0x03, 0x00], 1), None);
    }

    #[test]
    fn libdeflate_streams_join_into_one_at_every_level() {
        for level in [1, 2, 4, 6, 9, 12] {
            let pieces = samples();
            let mut joined = Vec::new();
            for (i, p) in pieces.iter().enumerate() {
                let mut z = libdeflate(p, level);
                let f = final_block(&z, p.len()).unwrap();
                assert_eq!(f.end.div_ceil(8), z.len(), "level {level} piece {i}");
                assert_eq!(inflate(&z), *p);
                if i + 1 < pieces.len() {
                    assert!(unfinish(&mut z, p.len()));
                    // Byte-aligned and not final: a sync flush's ending.
                    assert_eq!(z[z.len() - 4..], [0, 0, 0xff, 0xff]);
                }
                joined.extend(z);
            }
            assert!(inflate(&joined) == pieces.concat(), "level {level}");
        }
    }

    #[test]
    fn many_random_mixes_join_and_inflate_back() {
        // Pieces of every kind of content at every length, joined as the
        // parallel gzip joins them: the one stream must inflate back.
        let kinds = samples();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as usize
        };
        for round in 0..40 {
            let mut pieces = Vec::new();
            for _ in 0..1 + next() % 5 {
                let mut p = Vec::new();
                for _ in 0..1 + next() % 4 {
                    let k = &kinds[next() % kinds.len()];
                    let from = next() % (k.len() + 1);
                    let to = from + next() % (k.len() - from + 1);
                    p.extend_from_slice(&k[from..to]);
                }
                pieces.push(p);
            }
            let level = [1, 3, 6, 9][round % 4];
            let mut joined = Vec::new();
            for (i, p) in pieces.iter().enumerate() {
                let mut z = libdeflate(p, level);
                if i + 1 < pieces.len() {
                    assert!(unfinish(&mut z, p.len()), "round {round} piece {i}");
                }
                joined.extend(z);
            }
            assert!(inflate(&joined) == pieces.concat(), "round {round}");
        }
    }

    #[test]
    fn zlib_streams_are_read_the_same_way() {
        for p in samples() {
            for level in [0, 1, 6, 9] {
                let mut z = Vec::new();
                let mut e =
                    flate2::write::DeflateEncoder::new(&mut z, flate2::Compression::new(level));
                std::io::Write::write_all(&mut e, &p).unwrap();
                e.finish().unwrap();
                let f = final_block(&z, p.len()).unwrap();
                assert_eq!(f.end.div_ceil(8), z.len());
            }
        }
    }

    #[test]
    fn damaged_streams_are_refused_without_panicking() {
        let p = &samples()[4];
        let z = libdeflate(p, 6);
        // Cut short anywhere, or one bit flipped: never accepted as a
        // stream of the same data.
        for cut in (0..z.len()).step_by(97) {
            assert_eq!(final_block(&z[..cut], p.len()), None, "cut at {cut}");
        }
        let mut x = 1u64;
        for _ in 0..300 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let mut bad = z.clone();
            let at = (x >> 33) as usize % (bad.len() * 8);
            bad[at / 8] ^= 1 << (at % 8);
            if final_block(&bad, p.len()).is_some() {
                // A flip the walk accepts (inside a literal, say) must be
                // one a real decoder reads as the same number of bytes
                // (or refuses, for a distance the walk does not check).
                let mut out = Vec::new();
                if flate2::read::DeflateDecoder::new(&bad[..])
                    .read_to_end(&mut out)
                    .is_ok()
                {
                    assert_eq!(out.len(), p.len(), "bit {at}");
                }
            }
        }
        // Noise is not a stream.
        let mut junk = 7u64;
        for n in [1usize, 2, 10, 1000] {
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    junk = junk.wrapping_mul(0x5851_f42d_4c95_7f2d).wrapping_add(3);
                    (junk >> 40) as u8
                })
                .collect();
            let _ = final_block(&bytes, n);
        }
    }
}
