//! FROM: the source vertex of a stage's base image. (Which stage or image
//! a FROM names, and the state a stage starts from, are in `stages.rs`.)

use super::{Lowerer, Stage};
use crate::graph::{Canon, Op, Vertex, VertexId};
use crate::platform::Platform;

impl Lowerer<'_, '_, '_> {
    /// The vertex of base image `image` (normalised, `scratch` for none),
    /// named by `node` (the stage's FROM, or a COPY/RUN reading the image
    /// through `--from`).
    pub(super) fn source_vertex(
        &mut self,
        stage: &Stage<'_>,
        node: &crate::ast::Node,
        image: &str,
        platform: &Platform,
    ) -> VertexId {
        let digest = Canon::new("source")
            .str("image", image)
            .str("platform", &platform.to_string())
            .finish();
        let origin = self.origin(stage, node);
        self.compiler.graph.add(Vertex {
            op: Op::Source {
                image: image.to_string(),
                platform: platform.to_string(),
            },
            digest,
            key: digest,
            own: digest,
            parent: None,
            inputs: Vec::new(),
            origins: vec![origin],
            created_by: String::new(),
        })
    }
}
