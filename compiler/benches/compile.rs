//! Parse and lower throughput (MB/s of Dockerfile text), and compiling many
//! Dockerfiles into one graph.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rbk_compiler::{Compiler, Input, NoResolver};

/// A realistic Dockerfile: multi-stage, continuations, heredoc, JSON forms,
/// ARG/ENV expansion, comments.
fn dockerfile(i: usize) -> String {
    format!(
        r#"# syntax=docker/dockerfile:1
ARG BASE=debian:bookworm
FROM $BASE AS build{i}
ARG VERSION=1.{i}
ENV APP_HOME=/srv/app \
    PATH=/srv/app/bin:$PATH \
    LANG=C.UTF-8
WORKDIR $APP_HOME
# Dependencies first, for the cache.
COPY --chown=1000:1000 go.mod go.sum ./
RUN --mount=type=cache,target=/root/.cache \
    apt-get update && \
    apt-get install -y --no-install-recommends ca-certificates curl git make gcc libc6-dev && \
    rm -rf /var/lib/apt/lists/*
COPY . .
RUN <<EOF
set -eu
make build VERSION=${{VERSION}}
strip bin/app
EOF
FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="app{i}" org.opencontainers.image.version="1.{i}"
COPY --from=build{i} /srv/app/bin/app /usr/local/bin/app
EXPOSE 8080/tcp 9090
VOLUME ["/data"]
USER 1000:1000
HEALTHCHECK --interval=30s --timeout=3s CMD ["app", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["serve", "--port", "8080"]
"#
    )
}

fn bench(c: &mut Criterion) {
    // ~1 MiB of instructions in one file.
    let mut big = String::new();
    let mut i = 0;
    while big.len() < 1 << 20 {
        big.push_str(&dockerfile(i));
        i += 1;
    }
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("1MiB", |b| {
        b.iter(|| rbk_compiler::parse(std::hint::black_box(&big)).map(|d| d.nodes.len()))
    });
    g.finish();

    let one = dockerfile(0);
    let mut g = c.benchmark_group("parse+lower");
    g.throughput(Throughput::Bytes(one.len() as u64));
    g.bench_function("one Dockerfile", |b| {
        let input = Input {
            name: "app".into(),
            file: "Dockerfile".into(),
            source: one.clone(),
            context: "/ctx".into(),
            ..Default::default()
        };
        b.iter(|| rbk_compiler::compile(&input, &NoResolver).map(|g| g.len()))
    });
    g.finish();

    let mut g = c.benchmark_group("compile many");
    for n in [10usize, 100] {
        let inputs: Vec<Input> = (0..n)
            .map(|i| Input {
                name: format!("app{i}"),
                file: format!("app{i}/Dockerfile"),
                source: dockerfile(i),
                context: format!("/ctx/app{i}"),
                ..Default::default()
            })
            .collect();
        let bytes: usize = inputs.iter().map(|i| i.source.len()).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &inputs, |b, inputs| {
            b.iter(|| {
                let mut c = Compiler::new(&NoResolver);
                for i in inputs {
                    let _ = c.add(i);
                }
                c.finish().len()
            })
        });
    }
    g.finish();
}

/// `FROM s{i-1} AS s{i}` with an ARG, ENV, RUN and COPY --from per stage:
/// each stage inherits a growing environment (issue 9's scaling case).
fn chain(n: usize) -> String {
    let mut s = String::from("FROM scratch AS s0\n");
    for i in 1..n {
        let p = i - 1;
        s.push_str(&format!(
            "FROM s{p} AS s{i}\nARG A{i}=x\nENV E{i}=$A{i}\nRUN echo $E{i}\nCOPY --from=s{p} /a /b{i}\n"
        ));
    }
    s
}

/// Parse → lower → text render of stage chains: time per stage should not
/// grow with the chain's length.
fn scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("stage chain");
    g.sample_size(10);
    for n in [1000usize, 2000, 4000, 8000] {
        let input = Input {
            name: "chain".into(),
            file: "Dockerfile".into(),
            source: chain(n),
            context: "/ctx".into(),
            ..Default::default()
        };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &input, |b, input| {
            b.iter(|| {
                rbk_compiler::compile(input, &NoResolver).map(|g| {
                    rbk_compiler::render::render(&g, rbk_compiler::render::Format::Text).len()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, scaling);
criterion_main!(benches);
