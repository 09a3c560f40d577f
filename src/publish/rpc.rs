//! Eligibility over NATS request/reply: the NATS service `recovery-info`, endpoint
//! `{prefix}.rpc.eligibility` (production `recovery.v1.rpc.eligibility`). Request and reply are
//! protobuf ([`pb::EligibilityRequest`], [`pb::EligibilityReply`]); failures are NATS service
//! errors whose description is the API's stable `code` (`position_beyond_log`,
//! `view_not_fresh`, …) and whose code is the HTTP status, so a reset flow handles both
//! transports alike. The service answers from the same [`App::eligibility`] as HTTP.
//!
//! Every replica serves the endpoint (a queue group), unlike the publisher, which one leads.

use super::PublishError;
use super::messages::verdict_to_pb;
use crate::app::{App, AppError};
use crate::domain::{AdminId, TenantId};
use crate::error::Code;
use crate::events::pb;
use async_nats::service::{ServiceExt, error::Error as ServiceError};
use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// The NATS service name.
pub const SERVICE_NAME: &str = "recovery-info";

/// How the HTTP API reads a failure, which the service answers with too. The mapping is
/// `http::error`'s, a layer above this module: the server passes it in.
#[derive(Clone, Copy)]
pub struct ErrorMapping {
    /// The code of an error of the application, logged as the API logs it.
    pub code_of: fn(AppError) -> Code,
    /// The HTTP status of a code.
    pub status_of: fn(Code) -> u16,
}

/// The endpoint subject under a prefix.
pub fn endpoint_subject(prefix: &str) -> String {
    format!("{prefix}.rpc.eligibility")
}

/// Starts the service; requests are answered concurrently until the task is aborted.
pub async fn serve(
    client: async_nats::Client,
    app: App,
    prefix: &str,
    errors: ErrorMapping,
) -> Result<JoinHandle<()>, PublishError> {
    let service = client
        .service_builder()
        .description("recovery-info: reset eligibility of administrators")
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| PublishError::Service(e.to_string()))?;
    let mut endpoint = service
        .endpoint_builder()
        .name("eligibility")
        .add(endpoint_subject(prefix))
        .await
        .map_err(|e| PublishError::Service(e.to_string()))?;
    Ok(tokio::spawn(async move {
        // Keep the service (and its stats/ping handlers) alive with the endpoint.
        let _service = service;
        while let Some(request) = endpoint.next().await {
            let app = app.clone();
            tokio::spawn(async move {
                let answer = answer(&app, &request.message.payload, errors).await;
                if let Err(e) = request.respond(answer).await {
                    tracing::warn!(error = %e, "cannot reply to an eligibility request");
                }
            });
        }
    }))
}

/// The NATS service error of `code`: the code as its description, the code's HTTP status as
/// its number.
fn service_error(errors: ErrorMapping, code: Code) -> ServiceError {
    ServiceError {
        status: code.as_str().to_owned(),
        code: usize::from((errors.status_of)(code)),
    }
}

/// Answers one request: the encoded reply, or the service error.
pub async fn answer(
    app: &App,
    payload: &[u8],
    errors: ErrorMapping,
) -> Result<Bytes, ServiceError> {
    let request = pb::EligibilityRequest::decode(payload)
        .map_err(|_| service_error(errors, Code::MalformedRequest))?;
    let tenant: TenantId = request
        .tenant_id
        .parse()
        .map_err(|_| service_error(errors, Code::InvalidPath))?;
    let admin: AdminId = request
        .admin_id
        .parse()
        .map_err(|_| service_error(errors, Code::InvalidPath))?;
    let span = tracing::info_span!("rpc_eligibility", tenant_id = %tenant, admin_id = %admin);
    match app
        .eligibility(tenant, admin, request.min_position)
        .instrument(span)
        .await
    {
        Ok((position, verdict)) => Ok(Bytes::from(
            pb::EligibilityReply {
                tenant_id: tenant.to_string(),
                admin_id: admin.to_string(),
                position,
                verdict: Some(verdict_to_pb(&verdict)),
            }
            .encode_to_vec(),
        )),
        // Through the API's mapping, which logs the failures of the store as HTTP does.
        Err(e) => Err(service_error(errors, (errors.code_of)(e))),
    }
}
