//! Connecting to MongoDB with bounded timeouts: server selection and connect timeouts are set from
//! `--connect-timeout`, and a `ping` proves the server answers before any work starts.
//!
//! TLS is the driver's, configured by its URL options (`tls`, `tlsCAFile`,
//! `tlsCertificateKeyFile`, `tlsInsecure`, `tlsAllowInvalidCertificates`); the files they name are
//! checked here first so a typo is a configuration error naming the file.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::{ClientOptions, ServerAddress, Tls};
use mongodb::{Client, Database};

use crate::error::{Engine, Error, Result};
use crate::redact::SecretUrl;

/// A MongoDB connection target: URL plus database name.
#[derive(Clone)]
pub struct MongoTarget {
    url: SecretUrl,
    db: String,
    connect_timeout: Duration,
}

impl std::fmt::Debug for MongoTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MongoTarget({}, db={})", self.url.redacted(), self.db)
    }
}

impl MongoTarget {
    pub fn new(url: &SecretUrl, db: &str, connect_timeout: Duration) -> MongoTarget {
        MongoTarget {
            url: url.clone(),
            db: db.to_string(),
            connect_timeout,
        }
    }

    pub fn url(&self) -> &SecretUrl {
        &self.url
    }

    pub fn db_name(&self) -> &str {
        &self.db
    }

    /// Same server, another database.
    pub fn with_db(&self, db: &str) -> MongoTarget {
        MongoTarget {
            db: db.to_string(),
            ..self.clone()
        }
    }

    /// `hosts/db`, for messages.
    pub fn describe(&self) -> String {
        let red = self.url.redacted();
        let rest = red.split_once("://").map(|(_, r)| r).unwrap_or(&red);
        let rest = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
        let hosts = rest.split(['/', '?']).next().unwrap_or(rest);
        format!("{hosts}/{}", self.db)
    }

    /// A client whose server answered a `ping`. Retries while the server is unreachable for as
    /// long as `--wait` allows.
    pub async fn connect(&self) -> Result<Client> {
        crate::wait::retry_connect(&self.describe(), || self.connect_once()).await
    }

    async fn connect_once(&self) -> Result<Client> {
        let work = async {
            self.refuse_unsupported_options()?;
            let mut options = ClientOptions::parse(self.url.expose())
                .await
                .map_err(|e| self.parse_error(&e))?;
            self.check_tls_files(&options)?;
            self.fail_fast_when_refused(&options.hosts).await?;
            options.connect_timeout = Some(self.connect_timeout);
            options.server_selection_timeout = Some(self.connect_timeout);
            if options.app_name.is_none() {
                options.app_name = Some("dbkeeper".into());
            }
            let client =
                Client::with_options(options).map_err(|e| self.connect_error(short_error(&e)))?;
            client
                .database("admin")
                .run_command(doc! { "ping": 1 })
                .await
                .map_err(|e| self.connect_error(short_error(&e)))?;
            Ok(client)
        };
        tokio::time::timeout(self.connect_timeout + Duration::from_secs(2), work)
            .await
            .map_err(|_| {
                self.connect_error(format!(
                    "timed out after {}s",
                    self.connect_timeout.as_secs()
                ))
            })?
    }

    pub async fn database(&self) -> Result<Database> {
        Ok(self.connect().await?.database(&self.db))
    }

    /// The driver's rustls backend has no switch for skipping only the host name check; without
    /// this, the driver's own answer would suggest tlsAllowInvalidCertificates, which turns off
    /// far more.
    fn refuse_unsupported_options(&self) -> Result<()> {
        let query = self.url.expose().split_once('?').map_or("", |(_, q)| q);
        let asks = query.split('&').any(|pair| {
            pair.split('=')
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case("tlsAllowInvalidHostnames"))
        });
        if asks {
            return Err(Error::Usage(format!(
                "MongoDB URL {}: tlsAllowInvalidHostnames is not supported (dbkeeper's MongoDB \
                 driver checks host names with rustls, which cannot skip only that check); connect \
                 with a host name the server certificate lists, or, knowing it disables every \
                 certificate check, use tlsInsecure=true",
                self.url.redacted()
            )));
        }
        Ok(())
    }

    /// `tlsCAFile` and `tlsCertificateKeyFile` must be readable, else the driver fails with a bare
    /// "No such file or directory".
    fn check_tls_files(&self, options: &ClientOptions) -> Result<()> {
        let Some(Tls::Enabled(tls)) = &options.tls else {
            return Ok(());
        };
        for (option, path) in [
            ("tlsCAFile", &tls.ca_file_path),
            ("tlsCertificateKeyFile", &tls.cert_key_file_path),
        ] {
            if let Some(path) = path {
                std::fs::File::open(path).map_err(|e| {
                    Error::Usage(format!(
                        "MongoDB URL option {option}={}: {e}; point it at a readable PEM file",
                        path.display()
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// A closed port answers at once, but the driver keeps retrying until its server selection
    /// timeout: when every host refuses the connection outright, say so now.
    async fn fail_fast_when_refused(&self, hosts: &[ServerAddress]) -> Result<()> {
        let mut refused = Vec::new();
        for host in hosts {
            let ServerAddress::Tcp { host, port } = host else {
                return Ok(());
            };
            let address = format!("{host}:{}", port.unwrap_or(27017));
            let probe = tokio::net::TcpStream::connect(&address);
            match tokio::time::timeout(self.connect_timeout, probe).await {
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    refused.push(address)
                }
                _ => return Ok(()),
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(self.connect_error(format!(
            "connection refused by {}: is the server running and listening there?",
            refused.join(", ")
        )))
    }

    /// A URL the driver cannot parse is bad configuration (exit 2): waiting or retrying cannot
    /// fix it. Only the driver's own sentence is kept, without its `Kind: ..., labels: {}` dump.
    /// Anything else the parse can fail on (the DNS lookup of a `mongodb+srv://` URL) is a
    /// connection failure.
    fn parse_error(&self, e: &mongodb::error::Error) -> Error {
        use mongodb::error::ErrorKind;
        match e.kind.as_ref() {
            ErrorKind::InvalidArgument { message, .. } => Error::Usage(format!(
                "invalid MongoDB URL {} (from --mongo-url, {}, {} or the config file): {}",
                self.url.redacted(),
                crate::config::ENV_MONGO_URL,
                crate::config::ENV_MONGO_URL_FALLBACK,
                self.url.scrub(message)
            )),
            _ => self.connect_error(short_error(e)),
        }
    }

    pub fn connect_error(&self, message: String) -> Error {
        Error::Connect {
            engine: Engine::Mongo,
            target: self.describe(),
            message: self.url.scrub(&message),
        }
    }
}

/// The server's version from `buildInfo`, as "MongoDB 7.0.0".
pub async fn server_version(client: &Client) -> Result<String> {
    let info = client
        .database("admin")
        .run_command(doc! { "buildInfo": 1 })
        .await
        .map_err(|e| Error::db(Engine::Mongo, short_error(&e)))?;
    let version = info.get_str("version").unwrap_or("unknown");
    Ok(format!("MongoDB {version}"))
}

/// The driver's errors carry a long topology description on server selection timeouts; the first
/// sentence is what an operator needs.
pub fn short_error(e: &mongodb::error::Error) -> String {
    use mongodb::error::ErrorKind;
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { message, .. } => server_selection_summary(message),
        ErrorKind::Command(c) => format!("{} (code {} {})", c.message, c.code, c.code_name),
        // The error's own Display adds `Kind: ..., labels: {}, source: None, ...`.
        kind => kind.to_string(),
    }
}

/// A server selection timeout's first sentence and the first server's own error, without the
/// topology description around it.
fn server_selection_summary(message: &str) -> String {
    let first = message.split("Topology:").next().unwrap_or(message);
    let first = first.trim_end_matches([' ', '.', ',']);
    let cause = message
        .split_once("Error: Kind: ")
        .and_then(|(_, rest)| rest.split(", labels:").next());
    match cause {
        Some(cause) => format!("no server reachable ({first}: {cause})"),
        None => format!("no server reachable ({first})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_selection_errors_keep_the_cause_and_drop_the_topology() {
        let text = server_selection_summary(
            "Server selection timeout: No available servers. Topology: { Type: Unknown, \
             Servers: [ { Address: h:1, Type: Unknown, Error: Kind: I/O error: Connection \
             refused (os error 111), labels: {}, source: None } ] }",
        );
        assert_eq!(
            text,
            "no server reachable (Server selection timeout: No available servers: I/O error: \
             Connection refused (os error 111))"
        );
    }
}
