//! Calls of the distribution API beyond pull and push, for a build cache
//! kept as many small manifests: which tags a repository has (`tags/list`,
//! paginated), and deleting a manifest.

use ureq::http;

use super::error_body::describe_error_body;
use super::http::{Body, Client};
use super::{Progress, RegistryError};
use crate::digest::Digest;
use crate::reference::Reference;

/// Tags asked per page of `tags/list`.
const TAGS_PAGE: usize = 1000;

/// The next page of a paginated answer: the target of its
/// `Link: <URL>; rel="next"` header.
fn next_link(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .contains("rel=\"next\"")
            .then(|| url.trim().trim_start_matches('<').trim_end_matches('>'))
            .map(str::to_string)
    })
}

impl Client {
    /// Every tag of `reference`'s repository, following the registry's
    /// pages (`Link` headers). A repository that does not exist has none.
    pub fn list_tags(
        &self,
        reference: &Reference,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let s = self.session(reference.domain())?;
        let repo = reference.path();
        let scopes = vec![format!("repository:{repo}:pull")];
        let mut next = Some(format!("/v2/{repo}/tags/list?n={TAGS_PAGE}"));
        let mut tags = Vec::new();
        while let Some(path) = next.take() {
            let a = self.fetch(&s, "GET", &path, &[], &Body::Empty, &scopes, progress)?;
            match a.status {
                404 if tags.is_empty() => return Ok(tags),
                200 => {}
                status => {
                    return Err(RegistryError::Status {
                        registry: s.registry.clone(),
                        method: "GET",
                        url: s.url(&path),
                        status,
                        message: describe_error_body(status, &a.body),
                    })
                }
            }
            let page: Page = serde_json::from_slice(&a.body).map_err(|e| RegistryError::Json {
                registry: s.registry.clone(),
                what: format!("tag list of {repo}"),
                source: e,
            })?;
            let got = page.tags.unwrap_or_default();
            let more = !got.is_empty();
            tags.extend(got);
            next = next_link(&a.headers).filter(|_| more);
        }
        Ok(tags)
    }

    /// Deletes the manifest `digest` from `reference`'s repository (every
    /// tag naming it goes with it). A registry that does not allow
    /// deleting says so as [`RegistryError::DeleteDisabled`]; a manifest
    /// already gone is no error.
    pub fn delete_manifest(
        &self,
        reference: &Reference,
        digest: &Digest,
        progress: &(dyn Fn(&Progress) + Sync),
    ) -> Result<(), RegistryError> {
        let s = self.session(reference.domain())?;
        let repo = reference.path();
        let path = format!("/v2/{repo}/manifests/{digest}");
        let scopes = vec![format!("repository:{repo}:pull,push,delete")];
        let a = self.fetch(&s, "DELETE", &path, &[], &Body::Empty, &scopes, progress)?;
        match a.status {
            200 | 202 | 404 => Ok(()),
            405 => Err(RegistryError::DeleteDisabled {
                registry: s.registry.clone(),
                repository: repo.to_string(),
                message: describe_error_body(a.status, &a.body),
            }),
            status => Err(RegistryError::Status {
                registry: s.registry.clone(),
                method: "DELETE",
                url: s.url(&path),
                status,
                message: describe_error_body(status, &a.body),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn next_page_links() {
        let mut h = http::HeaderMap::new();
        assert_eq!(next_link(&h), None);
        h.insert(
            "link",
            "</v2/a/b/tags/list?last=x&n=1000>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("/v2/a/b/tags/list?last=x&n=1000")
        );
    }
}
