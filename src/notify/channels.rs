//! How notices leave: email over SMTP (`lettre`: STARTTLS with `smtp://host:587?tls=required`,
//! implicit TLS with `smtps://host:465`, credentials in the URL), and SMS / voice through an
//! HTTP webhook that any provider can be plugged behind: a JSON POST signed with HMAC-SHA256
//! over `<timestamp>.<body>` (header `X-Recovery-Signature: v1=<hex>`, the timestamp in
//! `X-Recovery-Timestamp`, seconds since the epoch, for the receiver to refuse replays), with
//! the notice's id as `Idempotency-Key`.

use super::templates::Rendered;
use crate::store::notifications::{Channel, Notification};
use hmac::{Hmac, Mac};
use lettre::message::{Mailbox, MultiPart, header};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;
use std::time::Duration;

/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The SMTP relay notices go through.
#[derive(Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of the Message-IDs (`<notification id>@<domain>`).
    domain: String,
}

impl Smtp {
    /// From `url` (`smtp://[user:pass@]host[:port][?tls=required]` or `smtps://…`) and the
    /// sender's address.
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("--smtp-from {from:?} is not an address: {e}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("--smtp-url is not an SMTP URL: {e}"))?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let domain = from.email.domain().to_owned();
        Ok(Smtp {
            transport,
            from,
            domain,
        })
    }

    /// Sends `message` to `to`; the Message-ID is the notice's id, so that a second send of
    /// the same notice is the same message to the receiver.
    pub async fn send(&self, n: &Notification, to: &str, message: &Rendered) -> Result<(), String> {
        let to: Mailbox = to.parse().map_err(|e| format!("not an address: {e}"))?;
        let email = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            .message_id(Some(format!("<{}@{}>", n.id, self.domain)))
            .header(header::Date::now())
            .multipart(MultiPart::alternative_plain_html(
                message.text.clone(),
                message.html.clone(),
            ))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        self.transport
            .send(email)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

/// The SMS and voice webhook.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: Vec<u8>,
}

/// The header with the signature.
pub const SIGNATURE_HEADER: &str = "X-Recovery-Signature";
/// The header with the signing time.
pub const TIMESTAMP_HEADER: &str = "X-Recovery-Timestamp";

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub fn new(url: &str, secret: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            secret.len() >= 16,
            "--sms-webhook-secret must be at least 16 bytes"
        );
        url::Url::parse(url).map_err(|e| anyhow::anyhow!("--sms-webhook-url: {e}"))?;
        Ok(Webhook {
            client: reqwest::Client::builder().timeout(SEND_TIMEOUT).build()?,
            url: url.to_owned(),
            secret: secret.as_bytes().to_vec(),
        })
    }

    /// POSTs the notice; a 2xx answer is delivery.
    pub async fn send(
        &self,
        n: &Notification,
        to: &str,
        message: &Rendered,
        language: &str,
    ) -> Result<(), String> {
        let body = serde_json::to_vec(&serde_json::json!({
            "id": n.id,
            "channel": n.channel.name(),
            "to": to,
            "text": message.short,
            "language": language,
            "kind": n.kind.name(),
            "tenant_id": n.tenant,
            "event_id": n.event_id,
        }))
        .map_err(|e| e.to_string())?;
        let timestamp = chrono::Utc::now().timestamp();
        let answer = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(&self.secret, timestamp, &body))
            .header("Idempotency-Key", n.id.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| format!("webhook: {e}"))?;
        match answer.status() {
            s if s.is_success() => Ok(()),
            s => Err(format!("webhook answered {s}")),
        }
    }
}

/// The channels configured.
#[derive(Clone, Default)]
pub struct Channels {
    pub smtp: Option<Smtp>,
    pub webhook: Option<Webhook>,
}

impl Channels {
    /// Whether a notice of `channel` can be sent at all.
    pub fn has(&self, channel: Channel) -> bool {
        match channel {
            Channel::Email => self.smtp.is_some(),
            Channel::Sms | Channel::Voice => self.webhook.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_and_the_body() {
        // Python's hmac.new(b"Jefe", b"1.what do ya want for nothing?", sha256).hexdigest().
        let sig = signature(b"Jefe", 1, b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "v1=a9049465ce89cfb8e9aac62333abda66f80e3403f51f57f6bae3c3a4485eca38"
        );
        assert_ne!(sig, signature(b"Jefe", 2, b"what do ya want for nothing?"));
    }
}
