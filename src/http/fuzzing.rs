//! The fuzz targets' way into parsers that are the crate's own business (`fuzz/`, not an API):
//! a query string read as every route that takes one reads it — axum's `Query`, as
//! `extract::ValidQuery` does — and, where it parses, put through that route's checks with
//! positions both plain and sealed.

use super::extract::past_point;
use super::positions::Positions;
use super::routes::audit::{CheckpointPage, ConsistencyQuery, InclusionQuery};
use super::routes::eligibility::EligibilityQuery;
use super::routes::history::{Page, admin_filter, event_types};
use super::routes::methods::ViewQuery;
use super::routes::sse::StreamQuery;
use crate::audit::merkle;
use crate::domain::{AdminId, TenantId};
use axum::extract::Query;
use axum::http::Uri;
use std::sync::Arc;

/// Reads `query` as each route's query string and checks what parses as the route does
/// (instants, positions, the `as_of`/`min_position` rules, a page's limit and type filters,
/// the admin filters, a proof's sizes and the spans of its tree). Returns how many of the
/// checks accepted it, so that none of the work can be optimized away.
pub fn query_string(query: &str) -> usize {
    let Ok(uri) = format!("/?{query}").parse::<Uri>() else {
        return 0;
    };
    let tenant = TenantId::from_uuid(uuid::Uuid::from_u128(1));
    let admin = AdminId::from_uuid(uuid::Uuid::from_u128(2));
    let mut accepted = 0;
    for positions in [Positions::Plain, Positions::Sealed(Arc::new([7; 32]))] {
        let position = |name, text: Option<&str>| positions.query(tenant, name, text).is_ok();
        // A view's and a verdict's point in time, as `methods::list` and `eligibility::get` read it.
        let past = |as_of, as_of_position: &Option<String>, min_position: &Option<String>| {
            past_point(
                &positions,
                tenant,
                as_of,
                as_of_position.as_deref(),
                min_position,
            )
            .is_ok()
                && position("min_position", min_position.as_deref())
        };
        if let Ok(Query(q)) = Query::<ViewQuery>::try_from_uri(&uri) {
            accepted += usize::from(past(q.as_of, &q.as_of_position, &q.min_position));
        }
        if let Ok(Query(q)) = Query::<EligibilityQuery>::try_from_uri(&uri) {
            accepted += usize::from(past(q.as_of, &q.as_of_position, &q.min_position));
        }
        if let Ok(Query(page)) = Query::<Page>::try_from_uri(&uri) {
            accepted += usize::from(page.query(&positions, tenant, Some(admin)).is_ok());
            accepted += usize::from(admin_filter("admin", page.admin.as_deref()).is_ok());
        }
        if let Ok(Query(q)) = Query::<StreamQuery>::try_from_uri(&uri) {
            accepted += usize::from(event_types(q.types.as_deref()).is_ok());
            accepted += usize::from(admin_filter("admin_id", q.admin_id.as_deref()).is_ok());
            accepted += usize::from(q.include.as_deref().map(str::trim) == Some("eligibility"));
        }
        if let Ok(Query(q)) = Query::<InclusionQuery>::try_from_uri(&uri)
            && let Ok(at) = positions.read(tenant, &q.position)
        {
            let size = q.size.unwrap_or(at);
            if at >= 1 && at <= size {
                accepted += merkle::inclusion_spans(at - 1, size).len();
            }
        }
        if let Ok(Query(q)) = Query::<ConsistencyQuery>::try_from_uri(&uri) {
            let to = q.to.unwrap_or(q.from);
            if q.from >= 1 && q.from <= to {
                accepted += merkle::consistency_spans(q.from, to).len();
            }
        }
    }
    if let Ok(Query(q)) = Query::<CheckpointPage>::try_from_uri(&uri) {
        accepted += usize::from(q.limit.is_none_or(|l| (1..=1000).contains(&l)));
    }
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_that_parse_are_checked_and_the_huge_sizes_end() {
        assert_eq!(query_string("%zz\u{0}"), query_string("%zz\u{0}"));
        assert!(
            query_string("") > 0,
            "an empty query is every route's default"
        );
        assert!(query_string("limit=10&type=MethodAdded,MethodRemoved") > query_string("limit=0"));
        // What schemathesis sent, which spun a core before `merkle::split` was fixed.
        assert!(query_string("from=270&to=10637003888411912192") > 0);
        assert!(query_string("position=1&size=18446744073709551615") > 0);
    }
}
