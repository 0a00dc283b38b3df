//! The lint rules of `rbk check`: each one found where BuildKit finds it,
//! and not on the corrected Dockerfile.

use rbk_compiler::config::RuntimeConfig;
use rbk_compiler::lint::{check, CheckEnv, Report, RULES};
use rbk_compiler::lower::{BaseImage, ImageResolver, Input};
use rbk_compiler::platform::Platform;

/// Knows `base:latest` (amd64, with HOME set) and `arm:latest` (arm64).
struct Bases;

impl ImageResolver for Bases {
    fn resolve(&self, image: &str, _: &Platform) -> Option<BaseImage> {
        let platform = match image {
            "base:latest" => "linux/amd64",
            "arm:latest" => "linux/arm64",
            _ => return None,
        };
        let mut config = RuntimeConfig::default();
        config.set_env("HOME", "/root");
        Some(BaseImage {
            config,
            platform: Some(platform.to_string()),
        })
    }
}

fn lint(src: &str) -> Report {
    let input = Input {
        name: "t".into(),
        file: "Dockerfile".into(),
        source: src.to_string(),
        context: "/ctx".into(),
        platform: Some("linux/amd64".into()),
        ..Default::default()
    };
    let ignored = |p: &str| p == "secret.txt";
    let env = CheckEnv {
        resolver: &Bases,
        ignored: &ignored,
    };
    check(&input, &env).unwrap_or_else(|e| panic!("{e}"))
}

fn rules(src: &str) -> Vec<&'static str> {
    lint(src).findings.iter().map(|f| f.rule).collect()
}

/// Each rule, a Dockerfile it fires on, and the same fixed.
const CASES: &[(&str, &str, &str)] = &[
    (
        "StageNameCasing",
        "FROM base AS Build\n",
        "FROM base AS build\n",
    ),
    (
        "FromAsCasing",
        "FROM base as build\n",
        "FROM base AS build\n",
    ),
    (
        "NoEmptyContinuation",
        "FROM base\nRUN echo a \\\n\n  b\n",
        "FROM base\nRUN echo a \\\n  b\n",
    ),
    (
        "ConsistentInstructionCasing",
        "FROM base\nRUN true\nrun true\n",
        "FROM base\nRUN true\nRUN true\n",
    ),
    (
        "DuplicateStageName",
        "FROM base AS a\nFROM base AS a\n",
        "FROM base AS a\nFROM base AS b\n",
    ),
    (
        "ReservedStageName",
        "FROM base AS scratch\n",
        "FROM base AS s\n",
    ),
    (
        "JSONArgsRecommended",
        "FROM base\nCMD echo hi\n",
        "FROM base\nCMD [\"echo\", \"hi\"]\n",
    ),
    (
        "MaintainerDeprecated",
        "FROM base\nMAINTAINER me\n",
        "FROM base\nLABEL maintainer=me\n",
    ),
    (
        "UndefinedArgInFrom",
        "FROM base:${TAG}\n",
        "ARG TAG=latest\nFROM base:${TAG}\n",
    ),
    (
        "WorkdirRelativePath",
        "FROM base\nWORKDIR app\n",
        "FROM base\nWORKDIR /srv\nWORKDIR app\n",
    ),
    (
        "UndefinedVar",
        "FROM base\nCOPY $SRC /dst\n",
        "FROM base\nARG SRC=.\nCOPY $SRC $HOME/dst\n",
    ),
    (
        "MultipleInstructionsDisallowed",
        "FROM base\nCMD [\"a\"]\nCMD [\"b\"]\n",
        "FROM base\nCMD [\"a\"]\nFROM base\nCMD [\"b\"]\n",
    ),
    (
        "LegacyKeyValueFormat",
        "FROM base\nENV A 1\n",
        "FROM base\nENV A=1\n",
    ),
    (
        "InvalidDefaultArgInFrom",
        "ARG TAG\nFROM base:${TAG}\n",
        "ARG TAG=latest\nFROM base:${TAG}\n",
    ),
    (
        "FromPlatformFlagConstDisallowed",
        "FROM --platform=linux/amd64 base\n",
        "FROM --platform=linux/amd64 base AS build-amd64\n",
    ),
    (
        "CopyIgnoredFile",
        "FROM base\nCOPY secret.txt /\n",
        "FROM base\nCOPY public.txt /\n",
    ),
    (
        "SecretsUsedInArgOrEnv",
        "FROM base\nARG DB_PASSWORD\n",
        "FROM base\nARG DB_HOST\n",
    ),
    (
        "RedundantTargetPlatform",
        "FROM --platform=$TARGETPLATFORM base\n",
        "FROM --platform=$BUILDPLATFORM base\n",
    ),
    ("InvalidBaseImagePlatform", "FROM arm\n", "FROM base\n"),
    (
        "ExposeProtoCasing",
        "FROM base\nEXPOSE 53/UDP\n",
        "FROM base\nEXPOSE 53/udp\n",
    ),
    (
        "ExposeInvalidFormat",
        "FROM base\nEXPOSE 8080:80\n",
        "FROM base\nEXPOSE 80\n",
    ),
];

#[test]
fn every_rule_fires_on_its_case_and_not_on_the_fix() {
    let cases = CASES;
    let covered: Vec<&str> = cases.iter().map(|c| c.0).collect();
    for (rule, _) in RULES {
        assert!(covered.contains(rule), "no case for {rule}");
    }
    for (rule, bad, good) in cases {
        assert!(
            rules(bad).contains(rule),
            "{rule} not found in {bad:?}: {:?}",
            rules(bad)
        );
        assert!(
            !rules(good).contains(rule),
            "{rule} found in {good:?}: {:?}",
            rules(good)
        );
    }
}

#[test]
fn findings_have_positions_and_the_directive_is_honoured() {
    let r = lint("FROM base\nMAINTAINER me\nCMD [bash, -c]\n");
    assert_eq!(
        r.lines(),
        [
            "Dockerfile:2:1 MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label",
            "Dockerfile:3:1 JSONArgsRecommended: CMD [bash, -c] looks like a JSON array but is not valid JSON, so it runs through a shell as one command; quote each element: [\"a\", \"b\"]",
        ]
    );
    assert!(!r.error);
    let r = lint("# check=skip=MaintainerDeprecated;error=true\nFROM base\nMAINTAINER me\nCMD [\"x\"]\nCMD x\n");
    let rules: Vec<&str> = r.findings.iter().map(|f| f.rule).collect();
    assert_eq!(
        rules,
        ["MultipleInstructionsDisallowed", "JSONArgsRecommended"]
    );
    assert!(r.error);
    assert!(lint("# check=skip=all\nfrom base AS X\nMAINTAINER me\n")
        .findings
        .is_empty());
    // COPY --from reads another stage, not the context: .dockerignore does
    // not apply.
    let from_stage = lint("FROM base AS a\nFROM base\nCOPY --from=a secret.txt /\n");
    assert!(from_stage
        .findings
        .iter()
        .all(|f| f.rule != "CopyIgnoredFile"));
    // A global ARG used in a stage without redeclaring it.
    let r = lint("ARG V=1\nFROM base\nENV A=$V\n");
    assert!(
        r.findings[0]
            .message
            .contains("needs `ARG V` in this stage"),
        "{r:?}"
    );
    // A misspelt variable gets a suggestion.
    let r = lint("FROM base\nARG VERSION=1\nLABEL v=$VERSOIN\n");
    assert!(
        r.findings[0].message.ends_with("(did you mean $VERSION?)"),
        "{r:?}"
    );
}
