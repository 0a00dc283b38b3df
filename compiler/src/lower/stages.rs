//! Walking the stages a target needs, without recursion.
//!
//! A stage needs its base stage before it starts and, at a `COPY --from` or
//! `RUN --mount=from=`, the stage named there. Those names are only known
//! once the instruction's words are expanded, so the walk cannot be planned
//! up front: a stage that reaches an unlowered dependency is suspended on an
//! explicit stack (its state and the instruction it stopped at), the
//! dependency is lowered, and the stage resumes. A chain of thousands of
//! stages therefore needs no more native stack than one stage.

use super::mount::parse_mount;
use super::{
    canonical_ref, normalize_image, Lowerer, NamedContext, Stage, StageImage, DEFAULT_PATH,
};
use crate::config::RuntimeConfig;
use crate::error::ParseError;
use crate::graph::{Source, VertexId};
use crate::instructions::{self, Instruction};
use crate::parse::expand::Env;
use crate::platform::Platform;
use crate::vars::{Scope, Vars};

/// A stage being lowered.
struct Frame {
    stage: usize,
    /// None until the base is ready.
    state: Option<StageImage>,
    /// The base image's ONBUILD triggers, which run before the body.
    triggers: Vec<Instruction>,
    /// The next instruction (triggers first, then the body).
    next: usize,
}

impl Frame {
    fn new(stage: usize) -> Self {
        Frame {
            stage,
            state: None,
            triggers: Vec::new(),
            next: 0,
        }
    }
}

impl Lowerer<'_, '_, '_> {
    /// Lowers stage `target` and every stage it needs; returns its state.
    pub(super) fn lower_stages(
        &mut self,
        stages: &[Stage<'_>],
        target: usize,
    ) -> Result<StageImage, ParseError> {
        let mut stack = vec![Frame::new(target)];
        self.busy[target] = true;
        while let Some(frame) = stack.last_mut() {
            let i = frame.stage;
            let need = self.advance(stages, frame)?;
            match need {
                Some(j) => {
                    if self.busy[j] {
                        return Err(ParseError::new(
                            stages[j].from.span,
                            format!("circular dependency detected on stage {}", stages[j].label),
                        ));
                    }
                    self.busy[j] = true;
                    stack.push(Frame::new(j));
                }
                None => {
                    let state = stack.pop().and_then(|f| f.state).ok_or_else(|| {
                        ParseError::new(stages[i].from.span, "internal: stage without a state")
                    })?;
                    self.busy[i] = false;
                    self.heads[i] = Some(state.head);
                    if stack.is_empty() {
                        return Ok(state);
                    }
                    if self.base_uses[i] > 0 {
                        self.states[i] = Some(state);
                    }
                }
            }
        }
        Err(ParseError::new(
            stages[target].from.span,
            "internal: target stage was not lowered",
        ))
    }

    /// Runs the frame's stage as far as it can: to its end (returns None) or
    /// to the first stage it needs that is not lowered yet.
    fn advance(
        &mut self,
        stages: &[Stage<'_>],
        frame: &mut Frame,
    ) -> Result<Option<usize>, ParseError> {
        let i = frame.stage;
        if frame.state.is_none() {
            if let Some(j) = self.base_of[i] {
                if self.heads[j].is_none() {
                    return Ok(Some(j));
                }
            }
            let (state, triggers) = self.start(stages, i)?;
            frame.state = Some(state);
            frame.triggers = triggers;
        }
        let Some(state) = frame.state.as_mut() else {
            return Ok(None);
        };
        let stage = &stages[i];
        let total = frame.triggers.len() + stage.body.len();
        while frame.next < total {
            let (inst, node) = match frame.triggers.get(frame.next) {
                // Triggers have no line of their own: they point at the FROM.
                Some(t) => (t, stage.from),
                None => {
                    let (inst, node) = &stage.body[frame.next - frame.triggers.len()];
                    (inst, *node)
                }
            };
            if let Some(j) = self.needs(i, inst, state) {
                return Ok(Some(j));
            }
            self.dispatch(stages, i, inst, node, state)?;
            frame.next += 1;
        }
        Ok(None)
    }

    /// The state a stage starts from (its base stage's or image's), and the
    /// base image's ONBUILD triggers.
    fn start(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
    ) -> Result<(StageImage, Vec<Instruction>), ParseError> {
        let stage = &stages[i];
        let platform = match &stage.platform {
            Some(p) => Platform::parse(p).map_err(|m| ParseError::new(stage.from.span, m))?,
            None => self.target_platform.clone(),
        };
        let mut state = match self.base_of[i] {
            Some(j) => {
                self.base_uses[j] = self.base_uses[j].saturating_sub(1);
                // The last stage built on `j` takes its state; others copy it
                // (cheaply: its maps are shared).
                let base = if self.base_uses[j] == 0 {
                    self.states[j].take()
                } else {
                    self.states[j].clone()
                };
                let mut s = base.ok_or_else(|| {
                    ParseError::new(stage.from.span, "internal: base stage has no state")
                })?;
                s.args = Vars::new();
                s.cmd_set = false;
                s
            }
            None => {
                if let Some(k) = self.built_image(&stage.base, stage.from, &platform)? {
                    let img = &self.compiler.graph.images[k];
                    let (config, head) = (img.config.clone(), img.vertex);
                    StageImage::from_config(config, platform.clone(), head)
                } else {
                    self.base_state(stage, &platform)?
                }
            }
        };
        if !state.env.contains("PATH") {
            state.env.set("PATH", DEFAULT_PATH);
        }
        // The base's ONBUILD triggers run first, then are not inherited.
        let mut triggers = Vec::new();
        for t in std::mem::take(&mut state.config.on_build) {
            let trigger_error = |e: ParseError| {
                ParseError::new(
                    stage.from.span,
                    format!("ONBUILD trigger {t:?}: {}", e.message),
                )
            };
            let df = crate::parse::parse(&t).map_err(trigger_error)?;
            for node in &df.nodes {
                triggers.push(instructions::convert(node).map_err(trigger_error)?);
            }
        }
        Ok((state, triggers))
    }

    /// The state of a stage whose base is an image (or scratch): its
    /// config from the resolver, a source vertex.
    fn base_state(
        &mut self,
        stage: &Stage<'_>,
        platform: &Platform,
    ) -> Result<StageImage, ParseError> {
        let base = match self.input.named_contexts.get(&stage.base) {
            // (A target context was taken by `built_image`.)
            None | Some(NamedContext::Target(_)) => stage.base.clone(),
            Some(NamedContext::Image(r)) => r.clone(),
            Some(NamedContext::Dir(_)) => {
                return Err(ParseError::new(
                    stage.from.span,
                    format!(
                        "FROM {0}: the build context {0} is a local directory; use it with COPY --from={0} (a stage's base must be an image: --build-context {0}=docker-image://REF)",
                        stage.base
                    ),
                ))
            }
        };
        let base_lower = base.to_ascii_lowercase();
        let (image, config) = if base_lower == "scratch" {
            ("scratch".to_string(), RuntimeConfig::default())
        } else {
            let image = normalize_image(&base);
            let config = self
                .compiler
                .resolver
                .resolve(&image, platform)
                .map(|b| b.config)
                .unwrap_or_default();
            (image, config)
        };
        let head = self.source_vertex(stage, stage.from, &image, platform);
        Ok(StageImage::from_config(config, platform.clone(), head))
    }

    /// The image of this build that a `FROM`/`--from` value names — a
    /// `target:` context, or a tag of an image added before — if any.
    /// Built for `platform`: an image of this build made for another
    /// platform only is an error (never the stored image in its place).
    pub(super) fn built_image(
        &mut self,
        name: &str,
        node: &crate::ast::Node,
        platform: &Platform,
    ) -> Result<Option<usize>, ParseError> {
        let platform = platform.to_string();
        // This build's image of the name for `platform`, else the other
        // platforms it is built for (not this input's own: FROM its own
        // tag starts from the stored image).
        let images = &self.compiler.graph.images;
        let own = &self.input.name;
        let lookup = |per: Option<&std::collections::BTreeMap<String, usize>>| -> (Option<usize>, Vec<String>) {
            let Some(per) = per else {
                return (None, Vec::new());
            };
            match per.get(&platform) {
                Some(&k) => (Some(k), Vec::new()),
                None => (
                    None,
                    per.iter()
                        .filter(|(_, &i)| &images[i].name != own)
                        .map(|(p, _)| p.clone())
                        .collect(),
                ),
            }
        };
        let (found, others) = match self.input.named_contexts.get(name) {
            Some(NamedContext::Target(t)) => {
                let (found, others) = lookup(self.compiler.by_name.get(t));
                if found.is_none() && others.is_empty() {
                    return Err(ParseError::new(
                        instructions::locate(node, name),
                        format!("context {name:?} is target {t:?}, which this build does not have"),
                    ));
                }
                (found, others)
            }
            Some(_) => (None, Vec::new()),
            None if name.eq_ignore_ascii_case("scratch") => (None, Vec::new()),
            None => lookup(self.compiler.by_tag.get(&canonical_ref(name))),
        };
        if !others.is_empty() {
            return Err(ParseError::new(
                instructions::locate(node, name),
                format!(
                    "{name} is built in this build for {} only, and this stage is for {platform}: build it for {platform} too (its target's platforms)",
                    others.join(", ")
                ),
            ));
        }
        if let Some(k) = found {
            let built = self.compiler.graph.images[k].name.clone();
            if !self.built_on.contains(&built) {
                self.built_on.push(built);
            }
        }
        Ok(found)
    }

    /// A stage that `inst` reads (`COPY --from`, `RUN --mount=from=`) and
    /// that is not lowered yet. Words that fail to expand are left for
    /// `dispatch` to report.
    fn needs(&self, i: usize, inst: &Instruction, state: &StageImage) -> Option<usize> {
        let scope = Scope {
            env: &state.env,
            args: &state.args,
        };
        let pending = |from: &str| self.stage_ref(i, from).filter(|&j| self.heads[j].is_none());
        match inst {
            Instruction::Copy(copy) => {
                let from = self.lex.process_word(copy.from.as_deref()?, &scope).ok()?;
                pending(&from)
            }
            Instruction::Run(run) => run.mounts.iter().find_map(|m| {
                let spec = self.lex.process_word(&m.spec, &scope as &dyn Env).ok()?;
                pending(parse_mount(&spec).ok()?.from.as_deref()?)
            }),
            _ => None,
        }
    }

    /// The stage a `--from` value names, if it names a usable one: by name
    /// any other stage, by index an earlier one.
    fn stage_ref(&self, i: usize, from: &str) -> Option<usize> {
        if self.input.named_contexts.contains_key(from) {
            return None;
        }
        match self.names.get(&from.to_ascii_lowercase()) {
            Some(&j) => (j != i).then_some(j),
            None => from.parse::<usize>().ok().filter(|&j| j < i),
        }
    }

    /// The directory a `--from` value names through `--build-context`.
    /// The build's own context, named by its role.
    pub(super) fn own_context(&self) -> Source {
        Source::Context {
            path: self.input.context.clone(),
            name: "context".to_string(),
        }
    }

    pub(super) fn named_dir(&self, from: &str) -> Option<String> {
        match self.input.named_contexts.get(from) {
            Some(NamedContext::Dir(d)) => Some(d.clone()),
            _ => None,
        }
    }

    /// A `--from` value: a named context's image, a stage name, a stage
    /// index, or an image.
    pub(super) fn resolve_from(
        &mut self,
        stages: &[Stage<'_>],
        i: usize,
        node: &crate::ast::Node,
        from: &str,
    ) -> Result<VertexId, ParseError> {
        if let Some(NamedContext::Image(r)) = self.input.named_contexts.get(from) {
            let image = normalize_image(r);
            let platform = self.target_platform.clone();
            return Ok(self.source_vertex(&stages[i], node, &image, &platform));
        }
        if self.stage_ref(i, from).is_none() {
            let platform = self.target_platform.clone();
            if let Some(k) = self.built_image(from, node, &platform)? {
                return Ok(self.compiler.graph.images[k].vertex);
            }
        }
        let lowered = |j: usize| {
            self.heads[j].ok_or_else(|| {
                ParseError::new(
                    instructions::locate(node, from),
                    format!("internal: stage {from:?} is not lowered yet"),
                )
            })
        };
        if let Some(&j) = self.names.get(&from.to_ascii_lowercase()) {
            if j == i {
                return Err(ParseError::new(
                    instructions::locate(node, from),
                    format!("stage {from:?} cannot copy from itself"),
                ));
            }
            return lowered(j);
        }
        if let Ok(j) = from.parse::<usize>() {
            if j >= i {
                return Err(ParseError::new(
                    instructions::locate(node, from),
                    format!("--from={j} refers to a stage that is not defined before this one"),
                ));
            }
            return lowered(j);
        }
        // A bare word one typo away from a stage name is that typo, not an
        // image: BuildKit would go and pull it.
        let bare = !from.contains([':', '/', '@', '.']);
        let names: Vec<&str> = stages.iter().filter_map(|s| s.name.as_deref()).collect();
        if let Some(stage) = bare
            .then(|| crate::suggest::did_you_mean(from, names.iter().copied()))
            .flatten()
        {
            return Err(ParseError::new(
                instructions::locate(node, from),
                format!("--from={from}: no stage named {from:?} (did you mean {stage}?)"),
            ));
        }
        let image = normalize_image(from);
        let platform = self.target_platform.clone();
        Ok(self.source_vertex(&stages[i], node, &image, &platform))
    }
}
