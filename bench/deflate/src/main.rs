//! Deflates whole 1 MiB buffers (the files named on the command line, cut
//! to 1 MiB) with each candidate at level 6 and prints the median time and
//! the output size. flate2 ends the piece with a sync flush, as rbk's
//! parallel gzip must; miniz_oxide and libdeflate end it with a final
//! block (libdeflate has no way to do otherwise); "libdeflate + seam" is
//! rbk's piece: libdeflate's stream rewritten by rbk's own seam module
//! (store/src/compress/seam.rs, compiled in here) to end as a sync flush
//! ends, and the seam's walk alone.

#[path = "../../../store/src/compress/seam.rs"]
#[allow(dead_code)]
mod seam;

use std::time::Instant;

use flate2::{Compress, Compression, FlushCompress};

const ROUNDS: usize = 21;

fn flate2_sync(d: &[u8]) -> usize {
    let mut c = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(d.len() + d.len() / 16 + 1024);
    c.compress_vec(d, &mut out, FlushCompress::Sync)
        .expect("deflate");
    out.len()
}

fn miniz(d: &[u8]) -> usize {
    miniz_oxide::deflate::compress_to_vec(d, 6).len()
}

fn libdeflate(d: &[u8], out: &mut Vec<u8>) -> usize {
    let level = libdeflater::CompressionLvl::new(6).expect("level 6");
    let mut c = libdeflater::Compressor::new(level);
    out.resize(c.deflate_compress_bound(d.len()), 0);
    c.deflate_compress(d, out).expect("deflate")
}

fn libdeflate_seam(d: &[u8], out: &mut Vec<u8>) -> usize {
    let n = libdeflate(d, out);
    out.truncate(n);
    assert!(seam::unfinish(out, d.len()), "the seam refused libdeflate's stream");
    out.len()
}

/// The walk over libdeflate's stream; its size is that stream's.
fn seam_walk(d: &[u8], stream: &[u8]) -> usize {
    seam::final_block(stream, d.len()).map_or(0, |f| f.end.div_ceil(8))
}

fn median_ms(f: &mut dyn FnMut() -> usize) -> (f64, usize) {
    let mut times = Vec::with_capacity(ROUNDS);
    let mut size = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        size = f();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times[ROUNDS / 2], size)
}

fn main() -> std::process::ExitCode {
    let backend = if cfg!(feature = "ng") {
        "zlib-ng"
    } else {
        "zlib-rs"
    };
    for path in std::env::args().skip(1) {
        let all = match std::fs::read(&path) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("deflate bench: cannot read {path}: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let d = &all[..all.len().min(1 << 20)];
        let mut out = Vec::new();
        let mut joined = Vec::new();
        let mut whole = vec![0; d.len() * 2 + 1024];
        let n = libdeflate(d, &mut whole);
        whole.truncate(n);
        let rows: [(String, &mut dyn FnMut() -> usize); 5] = [
            (format!("flate2/{backend} (sync flush)"), &mut || {
                flate2_sync(d)
            }),
            ("miniz_oxide".to_string(), &mut || miniz(d)),
            ("libdeflate (final block only)".to_string(), &mut || {
                libdeflate(d, &mut out)
            }),
            ("libdeflate + seam (rbk)".to_string(), &mut || {
                libdeflate_seam(d, &mut joined)
            }),
            ("seam walk alone".to_string(), &mut || seam_walk(d, &whole)),
        ];
        for (name, f) in rows {
            let (ms, size) = median_ms(f);
            println!(
                "{path}\t{name}\t{ms:.2} ms\t{size} bytes\t{:.1}%",
                size as f64 * 100.0 / d.len() as f64
            );
        }
    }
    std::process::ExitCode::SUCCESS
}
