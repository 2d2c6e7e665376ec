//! `forge search` against a registry's `_catalog`: every repository name, page by page,
//! filtered by a search term.

use crate::client::{header, read_small, status_error, Client, Payload};
use crate::error::RegistryError;

/// Page size asked of the registry.
const PAGE: usize = 100;

/// The repositories of the registry `domain` whose name contains `term`, at most `limit`.
pub fn search(
    client: &Client,
    domain: &str,
    term: &str,
    limit: usize,
) -> Result<Vec<String>, RegistryError> {
    let endpoint = client.endpoint(domain)?;
    let session = client.catalog_session(&endpoint)?;
    let mut url = format!("{}/v2/_catalog?n={PAGE}", endpoint.base);
    let mut found = Vec::new();
    loop {
        let response = session.send("GET", &url, &[], &Payload::Empty)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(status_error("GET", url, status, response));
        }
        let next = header(&response, "link").and_then(next_link);
        #[derive(serde::Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let bytes = read_small(response, &url)?;
        let page: Catalog =
            serde_json::from_slice(&bytes).map_err(|source| RegistryError::Decode {
                url: url.clone(),
                what: "catalog",
                source,
            })?;
        let empty = page.repositories.is_empty();
        for r in page.repositories {
            if r.contains(term) {
                found.push(r);
                if found.len() >= limit {
                    return Ok(found);
                }
            }
        }
        match next {
            Some(n) if !empty => url = session.absolute(&n),
            _ => return Ok(found),
        }
    }
}

/// `<url>; rel="next"` → url.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn link_header() {
        assert_eq!(
            super::next_link(r#"</v2/_catalog?last=b&n=100>; rel="next""#),
            Some("/v2/_catalog?last=b&n=100".to_string())
        );
        assert_eq!(super::next_link(""), None);
    }
}
