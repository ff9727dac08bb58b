//! Connecting to MongoDB with bounded timeouts: server selection and connect timeouts are set from
//! `--connect-timeout`, and a `ping` proves the server answers before any work starts.

use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::ClientOptions;
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
            let mut options = ClientOptions::parse(self.url.expose())
                .await
                .map_err(|e| self.parse_error(&e))?;
            options.connect_timeout = Some(self.connect_timeout);
            options.server_selection_timeout = Some(self.connect_timeout);
            if options.app_name.is_none() {
                options.app_name = Some("dbkeeper".into());
            }
            let client =
                Client::with_options(options).map_err(|e| self.connect_error(e.to_string()))?;
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
        ErrorKind::ServerSelection { message, .. } => {
            let first = message.split(", Topology:").next().unwrap_or(message);
            format!("no server reachable ({first})")
        }
        ErrorKind::Command(c) => format!("{} (code {} {})", c.message, c.code, c.code_name),
        _ => e.to_string(),
    }
}
