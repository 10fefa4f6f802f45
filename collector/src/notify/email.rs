//! Email delivery with lettre's blocking SMTP transport, on the channel's own thread (never on
//! the executor): STARTTLS on `smtp://` (required unless `starttls` says otherwise), TLS from
//! the first byte on `smtps://`, rustls with the system's roots (or only `ca_file`'s),
//! credentials from a file.

use anyhow::Context;
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::SmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Message, Transport};

use super::Notification;
use super::config::{EmailConfig, Security};

/// Sends one channel's notifications.
pub struct Sender {
    transport: SmtpTransport,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Sender {
    /// Prepares the transport (it connects for each message).
    pub fn new(config: EmailConfig) -> anyhow::Result<Self> {
        let tls = || -> anyhow::Result<TlsParameters> {
            let mut builder = TlsParameters::builder(config.host.clone());
            if let Some(path) = &config.ca_file {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .with_context(|| format!("bad PEM in {}", path.display()))?;
                builder =
                    builder.certificate_store(CertificateStore::None).add_root_certificate(cert);
            }
            Ok(builder.build()?)
        };
        let security = match config.security {
            Security::Tls => Tls::Wrapper(tls()?),
            Security::StartTlsRequired => Tls::Required(tls()?),
            Security::StartTlsOpportunistic => Tls::Opportunistic(tls()?),
            Security::Plain => Tls::None,
        };
        let mut builder = SmtpTransport::builder_dangerous(config.host.clone())
            .port(config.port)
            .tls(security)
            .timeout(Some(config.timeout));
        if let Some((user, password)) = &config.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let from = config.from.parse()?;
        let to = config.to.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
        Ok(Self { transport: builder.build(), from, to })
    }

    /// Delivers one notification to every recipient (one message), blocking.
    pub fn send(&self, notification: &Notification) -> Result<(), String> {
        let mut message = Message::builder().from(self.from.clone());
        for to in &self.to {
            message = message.to(to.clone());
        }
        let subject: String =
            notification.headline().chars().filter(|c| !c.is_control()).take(200).collect();
        let message = message
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(format!("{}\n-- \nhostwatch-collector\n", notification.details()))
            .map_err(|e| format!("building the message: {e}"))?;
        self.transport.send(&message).map(|_| ()).map_err(|e| format!("SMTP: {e}"))
    }
}
