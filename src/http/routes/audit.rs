//! The log's signed checkpoints and the Merkle proofs against them (docs/audit.md
//! "Checkpoints"): the public key and the checkpoints are public, as a transparency log's are
//! (a witness polls them); proofs are the tenant's auditors'.
//!
//! Hashes are in standard base64, as in the checkpoints themselves. Sizes and leaf indexes are
//! the global log's (a proof cannot be checked without them), so an auditor learns how many
//! events all tenants wrote, as the checkpoints already say.

use crate::audit::merkle::{self, Hash};
use crate::audit::tree;
use crate::domain::TenantId;
use crate::error::Code;
use crate::http::HttpState;
use crate::http::auth::{Access, Caller};
use crate::http::error::ApiError;
use crate::http::extract::{ValidPath, ValidQuery};
use crate::http::openapi::{Position, PublicProblems, ReadProblems, TenantPath};
use crate::store::audit::TreeHead;
use crate::store::{AuditReads, TreeStorage};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

fn b64(hash: &[u8]) -> String {
    B64.encode(hash)
}

/// A signed checkpoint: the tree's size and root, and the signed note that says so.
#[derive(Serialize, ToSchema)]
pub struct Checkpoint {
    /// The signer's verifier key (`<name>+<hash>+<base64>`).
    key: String,
    /// The signed note (C2SP tlog-checkpoint), as published.
    note: String,
    /// The root hash (base64).
    root: String,
    signed_at: chrono::DateTime<chrono::Utc>,
    size: u64,
}

impl Checkpoint {
    fn of(head: &TreeHead) -> Self {
        Checkpoint {
            size: head.size,
            root: b64(&head.root),
            signed_at: head.signed_at,
            key: head.key.clone(),
            note: head.note.clone(),
        }
    }
}

/// The key that signs the checkpoints.
#[derive(Serialize, ToSchema)]
pub struct PublicKey {
    /// `Ed25519`.
    algorithm: &'static str,
    name: String,
    /// The raw public key (base64).
    public_key: String,
    /// The C2SP signed-note verifier key.
    verifier_key: String,
}

/// `GET /v1/audit/public-key`: the key that signs the checkpoints.
#[utoipa::path(
    get,
    path = "/v1/audit/public-key",
    tag = "audit",
    responses(
        (status = 200, description = "The signing key; 404 where the server signs none", body = PublicKey),
        PublicProblems,
    )
)]
pub async fn public_key(State(s): State<HttpState>) -> Result<Json<PublicKey>, ApiError> {
    let key = s.audit_key()?;
    Ok(Json(PublicKey {
        name: key.name().to_owned(),
        algorithm: "Ed25519",
        verifier_key: key.to_string(),
        public_key: b64(&key.public_key()),
    }))
}

/// `GET /v1/audit/checkpoints/latest`: the newest signed checkpoint, as the signed note
/// itself (`text/plain`), as transparency logs serve theirs.
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoints/latest",
    tag = "audit",
    responses(
        (status = 200, description = "The signed note", content_type = "text/plain", body = String),
        PublicProblems,
    )
)]
pub async fn latest_checkpoint(State(s): State<HttpState>) -> Result<Response, ApiError> {
    let head = s
        .app
        .store
        .latest_tree_head()
        .await?
        .ok_or_else(|| ApiError::new(Code::NotFound, "no checkpoint has been signed yet"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        head.note,
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPage {
    /// Only checkpoints of larger sizes (the cursor).
    pub(crate) after_size: Option<u64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<u32>,
}

/// A page of checkpoints, smallest first.
#[derive(Serialize, ToSchema)]
pub struct Checkpoints {
    checkpoints: Vec<Checkpoint>,
    /// The cursor for the next page (`after_size=`), `null` when the page is empty.
    next_after_size: Option<u64>,
}

/// `GET /v1/audit/checkpoints?after_size=&limit=`: the signed checkpoints, smallest first, for
/// a witness that polls.
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoints",
    tag = "audit",
    params(CheckpointPage),
    responses(
        (status = 200, description = "A page of signed checkpoints", body = Checkpoints),
        PublicProblems,
    )
)]
pub async fn checkpoints(
    State(s): State<HttpState>,
    query: Result<ValidQuery<CheckpointPage>, ApiError>,
) -> Result<Json<Checkpoints>, ApiError> {
    let ValidQuery(page) = query?;
    let limit = page.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(Code::InvalidQuery, "limit is 1 to 1000"));
    }
    let heads = s
        .app
        .store
        .tree_heads(page.after_size.unwrap_or(0), limit)
        .await?;
    Ok(Json(Checkpoints {
        next_after_size: heads.last().map(|h| h.size),
        checkpoints: heads.iter().map(Checkpoint::of).collect(),
    }))
}

/// The signed checkpoint of exactly `size`, if one was signed.
async fn checkpoint_of(s: &HttpState, size: u64) -> Result<Option<TreeHead>, ApiError> {
    Ok(tree::head_of_size(&s.app.store, size).await?)
}

/// The size a proof is asked for, or the latest checkpoint's.
async fn size_or_latest(s: &HttpState, size: Option<u64>) -> Result<u64, ApiError> {
    match size {
        Some(size) => Ok(size),
        None => Ok(s
            .app
            .store
            .latest_tree_head()
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    Code::NotFound,
                    "no checkpoint has been signed yet: give the size",
                )
            })?
            .size),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    /// The event's position as the tenant sees it (a token, or a number with plain positions).
    pub(crate) position: String,
    /// The tree size (default: the latest checkpoint's).
    pub(crate) size: Option<u64>,
}

/// `GET …/audit/proof/inclusion?position=&size=`: that the tenant's event at `position` is
/// leaf `position - 1` of the log's tree of `size` leaves (RFC 9162 §2.1.3), with what the
/// leaf is made of, so that an auditor recomputes it: leaf = SHA-256(0x00 ‖ hash), hash =
/// SHA-256(prev_hash ‖ payload).
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant_id}/audit/proof/inclusion",
    tag = "audit",
    params(TenantPath, InclusionQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The inclusion proof", body = InclusionProof),
        ReadProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn inclusion(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<TenantId>,
    query: Result<ValidQuery<InclusionQuery>, ApiError>,
) -> Result<Json<InclusionProof>, ApiError> {
    caller.authorize(tenant, Access::AuditProof)?;
    let ValidQuery(q) = query?;
    let position = s.positions.read(tenant, &q.position).map_err(|_| {
        ApiError::new(
            Code::InvalidQuery,
            format!("position must be {}", s.positions.expected()),
        )
    })?;
    let size = size_or_latest(&s, q.size).await?;
    if position == 0 || position > size {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "the position must be within the tree's size",
        ));
    }
    let row = s
        .app
        .store
        .raw_events(position - 1, 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.position == position && r.tenant_id.eq_ignore_ascii_case(&tenant.to_string()))
        .ok_or_else(|| ApiError::new(Code::NotFound, "the tenant has no event at this position"))?;
    let index = position - 1;
    let mut spans = merkle::inclusion_spans(index, size);
    spans.push(0..size);
    let mut hashes = tree::proof(&s.app.store, spans, size).await?;
    let root = hashes.pop().unwrap_or_else(merkle::empty_root);
    let leaf = tree::leaf_of(&row.hash);
    Ok(Json(InclusionProof {
        position: s.positions.show(tenant, position),
        event_id: row.event_id,
        leaf_index: index,
        tree_size: size,
        leaf: Leaf {
            prev_hash: b64(&row.prev_hash),
            payload: b64(&row.payload),
            hash: b64(&row.hash),
            leaf_hash: b64(&leaf),
        },
        proof: hashes.iter().map(|h| b64(h)).collect(),
        root: b64(&root),
        checkpoint: checkpoint_of(&s, size).await?.map(|h| h.note),
    }))
}

/// That an event is a leaf of the log's tree (RFC 9162 §2.1.3); hashes in base64.
#[derive(Serialize, ToSchema)]
pub struct InclusionProof {
    /// The signed checkpoint of `tree_size`, if one was signed.
    checkpoint: Option<String>,
    #[schema(value_type = String)]
    event_id: String,
    leaf: Leaf,
    leaf_index: u64,
    #[schema(value_type = Position)]
    position: Value,
    proof: Vec<String>,
    root: String,
    tree_size: u64,
}

/// What a leaf is made of: leaf_hash = SHA-256(0x00 ‖ hash), hash = SHA-256(prev_hash ‖
/// payload).
#[derive(Serialize, ToSchema)]
pub struct Leaf {
    hash: String,
    leaf_hash: String,
    payload: String,
    prev_hash: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The older tree's size.
    pub(crate) from: u64,
    /// The newer tree's size (default: the latest checkpoint's).
    pub(crate) to: Option<u64>,
}

/// `GET …/audit/proof/consistency?from=&to=`: that the log's tree of `from` leaves is a prefix
/// of its tree of `to` (RFC 9162 §2.1.4): nothing below `from` was rewritten or dropped.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant_id}/audit/proof/consistency",
    tag = "audit",
    params(TenantPath, ConsistencyQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The consistency proof", body = ConsistencyProof),
        ReadProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn consistency(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<TenantId>,
    query: Result<ValidQuery<ConsistencyQuery>, ApiError>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    caller.authorize(tenant, Access::AuditProof)?;
    let ValidQuery(q) = query?;
    let to = size_or_latest(&s, q.to).await?;
    if q.from == 0 || q.from > to {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "from must be at least 1 and at most to",
        ));
    }
    let mut spans = merkle::consistency_spans(q.from, to);
    spans.push(0..q.from);
    spans.push(0..to);
    let mut hashes: Vec<Hash> = tree::proof(&s.app.store, spans, to).await?;
    let to_root = hashes.pop().unwrap_or_else(merkle::empty_root);
    let from_root = hashes.pop().unwrap_or_else(merkle::empty_root);
    Ok(Json(ConsistencyProof {
        from: q.from,
        to,
        from_root: b64(&from_root),
        to_root: b64(&to_root),
        proof: hashes.iter().map(|h| b64(h)).collect(),
        from_checkpoint: checkpoint_of(&s, q.from).await?.map(|h| h.note),
        to_checkpoint: checkpoint_of(&s, to).await?.map(|h| h.note),
    }))
}

/// That the tree of `from` leaves is a prefix of the tree of `to` (RFC 9162 §2.1.4).
#[derive(Serialize, ToSchema)]
pub struct ConsistencyProof {
    from: u64,
    /// The signed checkpoints of the two sizes, where signed.
    from_checkpoint: Option<String>,
    from_root: String,
    proof: Vec<String>,
    to: u64,
    to_checkpoint: Option<String>,
    to_root: String,
}

/// The tenant's hash chains recomputed: intact (how much was checked), or the first broken
/// link.
#[derive(Serialize, ToSchema)]
pub struct Verification {
    #[serde(skip_serializing_if = "Option::is_none")]
    broken: Option<Broken>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Position>)]
    checked_up_to: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<u64>,
    intact: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    streams: Option<u64>,
}

/// The first link of a chain that does not hold.
#[derive(Serialize, ToSchema)]
pub struct Broken {
    #[schema(value_type = Position)]
    position: Value,
    problem: String,
    stream: Option<String>,
    version: Option<u64>,
}

/// `GET …/audit/verify`: the hash chains of every stream of the tenant, recomputed from the
/// stored rows (its auditors' read-only `audit verify`): intact, or the first broken link.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant_id}/audit/verify",
    tag = "audit",
    params(TenantPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Intact, or the first broken link", body = Verification),
        ReadProblems,
    )
)]
#[tracing::instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn verify(
    State(s): State<HttpState>,
    caller: Caller,
    ValidPath(tenant): ValidPath<TenantId>,
) -> Result<Json<Verification>, ApiError> {
    use crate::audit::verify::{VerifyError, verify_tenant};
    caller.authorize(tenant, Access::AuditProof)?;
    match verify_tenant(&s.app.store, tenant).await {
        Ok(summary) => Ok(Json(Verification {
            intact: true,
            events: Some(summary.events),
            streams: Some(summary.streams),
            checked_up_to: Some(s.positions.show(tenant, summary.last)),
            broken: None,
        })),
        Err(VerifyError::Broken(link)) => Ok(Json(Verification {
            intact: false,
            events: None,
            streams: None,
            checked_up_to: None,
            broken: Some(Broken {
                position: s.positions.show(tenant, link.position),
                stream: link.stream,
                version: link.version,
                problem: link.problem,
            }),
        })),
        Err(VerifyError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::new(Code::InternalError, e.to_string())),
    }
}
