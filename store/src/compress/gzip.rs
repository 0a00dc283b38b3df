//! gzip compressed on all cores, pigz-style, as one ordinary gzip member.
//!
//! The input is cut into fixed 1 MiB chunks; each is deflated on its own
//! (rayon, by libdeflate) and ended as a sync flush ends it, byte-aligned
//! and not final (see [`super::seam`]), so the pieces concatenate into one
//! valid deflate stream; the last one carries the final block. Chunk boundaries depend only on the input, never on the thread
//! count or on how the caller sized its writes, so the output (and thus the
//! layer digest) is deterministic. Each chunk starts without the previous
//! one's dictionary, which costs well under 1% of ratio.
//!
//! A chunk that looks incompressible (already-compressed files: archives,
//! images, wheels, jars) is stored rather than deflated: deflating random
//! bytes at level 6 is the slowest case of all and gains nothing. The test
//! is a fast deflate of three small samples, so it too depends only on the
//! input.

use std::cell::RefCell;
use std::io::{self, Write};

use flate2::{Compress, FlushCompress, Status};
use rayon::prelude::*;

use super::seam;

/// Uncompressed bytes per independently deflated piece.
pub(super) const CHUNK: usize = 1 << 20;

/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS
/// "unknown" — nothing that varies between machines or runs.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A writer producing a single-member gzip stream, compressing chunks in
/// parallel. Call [`ParallelGzip::finish`] to write the trailer.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: flate2::Compression,
    pending: Vec<u8>,
    crc: flate2::Crc,
    header_done: bool,
}

impl<W: Write> ParallelGzip<W> {
    /// Starts a gzip stream into `inner` at `level` (0-9).
    pub fn new(inner: W, level: u32) -> Self {
        Self {
            inner,
            level: flate2::Compression::new(level.min(9)),
            pending: Vec::new(),
            crc: flate2::Crc::new(),
            header_done: false,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if !self.header_done {
            self.inner.write_all(&HEADER)?;
            self.header_done = true;
        }
        Ok(())
    }

    /// Compresses and writes every full chunk in `pending`.
    fn flush_full_chunks(&mut self) -> io::Result<()> {
        let full = self.pending.len() / CHUNK * CHUNK;
        if full == 0 {
            return Ok(());
        }
        self.header()?;
        let level = self.level;
        let pieces: Vec<io::Result<Vec<u8>>> = self.pending[..full]
            .par_chunks(CHUNK)
            .map(|c| deflate(c, level_for(c, level), false))
            .collect();
        for p in pieces {
            self.inner.write_all(&p?)?;
        }
        self.pending.drain(..full);
        Ok(())
    }

    /// Writes the last block and the trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_full_chunks()?;
        self.header()?;
        let last = deflate(&self.pending, level_for(&self.pending, self.level), true)?;
        self.inner.write_all(&last)?;
        self.inner.write_all(&self.crc.sum().to_le_bytes())?;
        self.inner.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.pending.extend_from_slice(buf);
        // Batch one chunk per thread so every core has work.
        if self.pending.len() >= CHUNK * rayon::current_num_threads().max(2) {
            self.flush_full_chunks()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Only whole chunks may be emitted early (anything else would make
        // the output depend on flush timing); the rest waits for finish().
        self.flush_full_chunks()?;
        self.inner.flush()
    }
}

/// Bytes in each sample [`level_for`] deflates.
const SAMPLE: usize = 16 * 1024;

/// `level`, or 0 (stored blocks) when three samples of `chunk` (start,
/// middle, end) each shrink by less than 2% at the fastest level: then the
/// chunk is almost surely incompressible, and deflating it would only burn
/// time. Samples cost about 5% of the chunk at level 1.
fn level_for(chunk: &[u8], level: flate2::Compression) -> flate2::Compression {
    if level.level() == 0 || chunk.len() < 4 * SAMPLE {
        return level;
    }
    let starts = [0, chunk.len() / 2, chunk.len() - SAMPLE];
    let incompressible = starts.iter().all(|&at| {
        let sample = &chunk[at..at + SAMPLE];
        let mut c = Compress::new(flate2::Compression::fast(), false);
        let mut out = Vec::with_capacity(SAMPLE + SAMPLE / 8 + 64);
        match c.compress_vec(sample, &mut out, FlushCompress::Finish) {
            // 98%: stored blocks cost 5 bytes per 64 KiB, so anything
            // shrinking less is not worth deflating.
            Ok(Status::StreamEnd) => out.len() * 100 >= sample.len() * 98,
            _ => false,
        }
    });
    if incompressible {
        flate2::Compression::none()
    } else {
        level
    }
}

/// Raw-deflates `data`; a non-last piece ends like a sync flush (byte
/// aligned, not final), the last with the final block.
///
/// libdeflate compresses (the fastest deflate measured at the same ratio,
/// `bench/deflate.sh`), and [`seam::unfinish`] turns its complete stream
/// into such a piece. zlib-rs writes stored chunks (level 0) and any piece
/// whose libdeflate stream the seam does not accept (none is known): both
/// choices depend on the input alone, so the output stays deterministic.
fn deflate(data: &[u8], level: flate2::Compression, last: bool) -> io::Result<Vec<u8>> {
    if level.level() > 0 {
        if let Some(piece) = libdeflate(data, level.level(), last) {
            return Ok(piece);
        }
    }
    zlib_deflate(data, level, last)
}

thread_local! {
    /// Each thread's libdeflate compressors, one per level used (each
    /// holds its match finder's tables: too big to make per chunk).
    static COMPRESSORS: RefCell<Vec<(u32, libdeflater::Compressor)>> =
        const { RefCell::new(Vec::new()) };
}

/// `data` as one libdeflate piece at `level` (1-9): a whole stream if
/// `last`, else unfinished. None if libdeflate or the seam refuse it.
fn libdeflate(data: &[u8], level: u32, last: bool) -> Option<Vec<u8>> {
    let lvl = libdeflater::CompressionLvl::new(i32::try_from(level).ok()?).ok()?;
    COMPRESSORS.with_borrow_mut(|all| {
        let at = match all.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                all.push((level, libdeflater::Compressor::new(lvl)));
                all.len() - 1
            }
        };
        let c = &mut all[at].1;
        let mut out = vec![0; c.deflate_compress_bound(data.len())];
        let n = c.deflate_compress(data, &mut out).ok()?;
        out.truncate(n);
        (last || seam::unfinish(&mut out, data.len())).then_some(out)
    })
}

/// [`deflate`] by zlib-rs, ending a non-last piece with a sync flush.
fn zlib_deflate(data: &[u8], level: flate2::Compression, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(level, false);
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
        let consumed = usize::try_from(c.total_in()).unwrap_or(data.len());
        let status = c
            .compress_vec(&data[consumed.min(data.len())..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = usize::try_from(c.total_in()).is_ok_and(|n| n == data.len());
        match status {
            Status::StreamEnd => return Ok(out),
            // Room left after consuming everything: the sync flush is done.
            _ if !last && all_in && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    fn data(n: usize) -> Vec<u8> {
        // Compressible but not trivial.
        (0..n)
            .map(|i| ((i * 7 + i / 1000) % 97) as u8 ^ (i % 13) as u8)
            .collect()
    }

    fn gz(d: &[u8], write_size: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 6);
        for piece in d.chunks(write_size.max(1)) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn single_member_round_trip_at_chunk_edges() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + CHUNK / 2] {
            let d = data(n);
            let z = gz(&d, 100_000);
            // A single-member decoder must see everything: one gzip member.
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&z[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out.len(), d.len(), "{n}");
            assert!(out == d, "{n}: content differs");
        }
    }

    #[test]
    fn output_does_not_depend_on_write_sizes() {
        let d = data(2 * CHUNK + 12345);
        let a = gz(&d, 1);
        assert_eq!(a, gz(&d, 4096));
        assert_eq!(a, gz(&d, d.len()));
        assert!(a.len() < d.len() / 2, "it compresses");
    }

    /// xorshift bytes: incompressible.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn incompressible_chunks_are_stored_compressible_ones_deflated() {
        let level = flate2::Compression::new(6);
        assert_eq!(level_for(&noise(CHUNK, 1), level).level(), 0);
        assert_eq!(level_for(&data(CHUNK), level).level(), 6);
        // Noise at the start only: the middle and end samples compress.
        let mut mixed = noise(CHUNK / 4, 2);
        mixed.extend(data(CHUNK - CHUNK / 4));
        assert_eq!(level_for(&mixed, level).level(), 6);
        // Level 0 stays 0; small pieces are not sampled.
        assert_eq!(
            level_for(&data(CHUNK), flate2::Compression::none()).level(),
            0
        );
        assert_eq!(level_for(&noise(1000, 3), level).level(), 6);

        // A stream of noise then text: round trips, deterministic, the
        // noise costs almost nothing, the text still shrinks.
        let mut d = noise(3 * CHUNK, 4);
        d.extend(data(2 * CHUNK));
        let z = gz(&d, 70_000);
        assert_eq!(z, gz(&d, d.len()));
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == d);
        assert!(z.len() < 3 * CHUNK + CHUNK, "{} bytes", z.len());
    }

    #[test]
    fn system_gzip_accepts_it() {
        let d = data(CHUNK * 2 + 7);
        let z = gz(&d, 65536);
        let Ok(mut child) = std::process::Command::new("gzip")
            .arg("-dc")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("SKIPPED: system_gzip_accepts_it: no gzip binary");
            return;
        };
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&z).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        assert!(out.stdout == d);
    }
}
