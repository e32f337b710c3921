//! Query string parameters: paging and user selection.

use std::collections::BTreeSet;

use super::ApiError;
use crate::model::UserSelector;
use crate::ports::PageRequest;
use crate::service::UserQuery;

/// The query string's pairs, decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// Refuses a parameter that is none of `accepted` (nor one of them spelled `name[]`),
    /// naming it: a parameter the route does not read must not look as if it did something.
    pub(super) fn only(&self, accepted: &[&str]) -> Result<(), ApiError> {
        let unknown = self.0.iter().map(|(key, _)| key).find(|key| {
            let name = key.strip_suffix("[]").unwrap_or(key);
            !accepted.contains(&name)
        });
        let Some(unknown) = unknown else {
            return Ok(());
        };
        let takes = if accepted.is_empty() {
            "no query parameters".to_owned()
        } else {
            format!("only {}", accepted.join(", "))
        };
        Err(ApiError::bad_request(
            &clip(unknown),
            format!(
                "unknown query parameter '{}': this route takes {takes}",
                clip(unknown)
            ),
        ))
    }

    /// The single value of a parameter (`name` or `name[]`); repeating it is an error.
    pub(super) fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, ApiError> {
        let mut values = self.values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_request(
                name,
                format!("{name} must be given once"),
            ));
        }
        Ok(first)
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter_map(move |(key, value)| {
            (key == name || key.strip_suffix("[]") == Some(name)).then_some(value.as_str())
        })
    }

    /// A comma-separated or repeated list, duplicates collapsed; `None` when absent.
    pub(super) fn list(&self, name: &str) -> Option<Vec<String>> {
        let mut present = false;
        let mut seen = BTreeSet::new();
        let mut items = Vec::new();
        for value in self.values(name) {
            present = true;
            for item in value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
            {
                if seen.insert(item.to_owned()) {
                    items.push(item.to_owned());
                }
            }
        }
        present.then_some(items)
    }

    fn integer(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        let Some(text) = self.single(name)? else {
            return Ok(None);
        };
        match text.trim().parse::<u64>() {
            Ok(value) if (min..=max).contains(&value) => Ok(Some(value)),
            _ => Err(ApiError::bad_request(
                name,
                format!(
                    "{name} must be an integer from {min} to {max}, got '{}'",
                    clip(text)
                ),
            )),
        }
    }

    /// `page` (from 1) and `per_page` (1..=max, default given).
    pub fn page(&self, default_per_page: u64, max_per_page: u64) -> Result<PageRequest, ApiError> {
        Ok(PageRequest {
            page: self.integer("page", 1, u64::from(u32::MAX))?.unwrap_or(1),
            per_page: self
                .integer("per_page", 1, max_per_page)?
                .unwrap_or(default_per_page),
        })
    }

    /// "Get user configuration data": `emails=`, `ids=` or `agent_numbers=` (one kind, ≤ max
    /// values, not with `page`), or a page of all users.
    pub fn user_query(&self, max: usize) -> Result<UserQuery, ApiError> {
        let selectors: Vec<(&str, Vec<String>)> = ["emails", "ids", "agent_numbers"]
            .into_iter()
            .filter_map(|name| self.list(name).map(|values| (name, values)))
            .collect();
        let page = self.page(100, max as u64)?;
        let (name, values) = match selectors.as_slice() {
            [] => return Ok(UserQuery::Page(page)),
            [one] => one.clone(),
            [first, second, ..] => {
                return Err(ApiError::bad_request(
                    second.0,
                    format!(
                        "{} cannot be combined with {}: select by one kind of id",
                        second.0, first.0
                    ),
                ))
            }
        };
        if self.single("page")?.is_some() {
            return Err(ApiError::bad_request(
                "page",
                format!("page cannot be combined with {name}"),
            ));
        }
        if values.is_empty() {
            return Err(ApiError::bad_request(
                name,
                format!("{name} must list at least one value"),
            ));
        }
        if values.len() > max {
            return Err(ApiError::bad_request(
                name,
                format!("{name} may list at most {max} values"),
            ));
        }
        Ok(UserQuery::Select(match name {
            "emails" => UserSelector::Emails(values),
            "ids" => UserSelector::Ids(
                values
                    .iter()
                    .map(|value| value.parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| ApiError::bad_request("ids", "ids must be positive integers"))?,
            ),
            _ => UserSelector::AgentNumbers(values),
        }))
    }
}

fn clip(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pages_and_selections() {
        let q = Query::parse(Some("page=2&per_page=50"));
        assert_eq!(
            q.page(100, 1000).unwrap(),
            PageRequest {
                page: 2,
                per_page: 50
            }
        );
        assert!(Query::parse(Some("per_page=1001")).page(100, 1000).is_err());
        assert!(Query::parse(Some("per_page=abc")).page(100, 1000).is_err());
        assert_eq!(
            Query::parse(Some("emails=a@x.io,b@x.io&emails=a@x.io"))
                .user_query(1000)
                .unwrap(),
            UserQuery::Select(UserSelector::Emails(vec!["a@x.io".into(), "b@x.io".into()]))
        );
        assert!(Query::parse(Some("ids=1&page=2")).user_query(1000).is_err());
        assert!(Query::parse(Some("ids=1&emails=a@x.io"))
            .user_query(1000)
            .is_err());
        assert!(Query::parse(Some("ids=x")).user_query(1000).is_err());
    }
}
