//! WORKDIR: the config's working directory, and a vertex that creates the
//! directory at build time (owned by the USER in effect, as in BuildKit).

use super::util::join_path;
use super::{Lowerer, Stage, StageImage};
use crate::ast::Node;
use crate::error::ParseError;
use crate::graph::{Canons, Digests, Op, Vertex};
use crate::parse::expand::Env;

impl Lowerer<'_, '_, '_> {
    /// Lowers `WORKDIR w`: a relative `w` joins the previous directory.
    pub(super) fn workdir(
        &mut self,
        stage: &Stage<'_>,
        w: &str,
        node: &Node,
        state: &mut StageImage,
        env: &dyn Env,
    ) -> Result<(), ParseError> {
        let w = self.expand(node, w, env)?;
        state.config.working_dir = join_path(&state.config.working_dir, &w);
        let path = state.config.working_dir.clone();
        let user = state.config.user.clone();
        let Digests {
            id: digest,
            key,
            own,
        } = Canons::new("workdir")
            .vertex("parent", self.compiler.graph.vertex(state.head))
            .str("path", &path)
            .str("user", &user)
            .finish();
        let origin = self.origin(stage, node);
        state.head = self.compiler.graph.add(Vertex {
            created_by: format!("WORKDIR {path}"),
            op: Op::Workdir { path, user },
            digest,
            key,
            own,
            parent: Some(state.head),
            inputs: Vec::new(),
            origins: vec![origin],
        });
        Ok(())
    }
}
