//! File system calls std does not offer, for whoever builds trees the way
//! layers hold them: extended attributes and device nodes (whiteouts).

pub use crate::sys::{get_xattr, list_xattrs, make_node, set_xattr, NodeKind};
