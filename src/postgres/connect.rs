//! Connecting to PostgreSQL: single clients (for the migration lock, which must live on one
//! session) and deadpool pools (for parallel COPY workers), both with bounded timeouts and TLS as
//! the URL's `sslmode` asks.
//!
//! TLS follows libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` (see [`super::tls`]).
//! Connection errors name the host and database, never the password.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::Host;
use tokio_postgres::Client;

use super::tls::PgTls;
use crate::error::{Engine, Error, Result};
use crate::redact::SecretUrl;

/// A parsed PostgreSQL connection target.
#[derive(Clone)]
pub struct PgTarget {
    url: SecretUrl,
    config: tokio_postgres::Config,
    tls: PgTls,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTarget({})", self.url.redacted())
    }
}

impl PgTarget {
    pub fn new(url: &SecretUrl, connect_timeout: Duration) -> Result<PgTarget> {
        let invalid = |message: &str| {
            Error::Usage(format!(
                "invalid PostgreSQL URL {}: {}",
                url.redacted(),
                url.scrub(message)
            ))
        };
        let (rest, tls) = PgTls::split(url.expose()).map_err(|e| invalid(&e))?;
        let mut config: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| invalid(&e.to_string()))?;
        config.ssl_mode(tls.mode.driver_mode());
        config.connect_timeout(connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("dbkeeper");
        }
        Ok(PgTarget {
            url: url.clone(),
            config,
            tls,
        })
    }

    pub fn url(&self) -> &SecretUrl {
        &self.url
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub fn tls(&self) -> &PgTls {
        &self.tls
    }

    /// The database name, defaulting like libpq to the user name.
    pub fn dbname(&self) -> String {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres")
            .to_string()
    }

    /// `host:port/db`, for messages.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.dbname())
    }

    /// The same server, another database (for creating/dropping restore targets).
    pub fn with_dbname(&self, dbname: &str) -> PgTarget {
        let mut config = self.config.clone();
        config.dbname(dbname);
        PgTarget {
            url: self.url.clone(),
            config,
            tls: self.tls.clone(),
        }
    }

    /// One dedicated connection. Its driver task ends when the client is dropped.
    /// Retries while the server is unreachable for as long as `--wait` allows.
    pub async fn connect(&self) -> Result<Client> {
        crate::wait::retry_connect(&self.describe(), || self.connect_once()).await
    }

    async fn connect_once(&self) -> Result<Client> {
        let timeout = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10));
        let attempt = self.config.connect(self.tls.connector());
        let (client, connection) = tokio::time::timeout(timeout + Duration::from_secs(1), attempt)
            .await
            .map_err(|_| self.connect_error(format!("timed out after {}s", timeout.as_secs())))?
            .map_err(|e| self.connect_error(self.explain(&e)))?;
        tokio::spawn(async move {
            // Errors surface on the client's next call; nothing to do with them here.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A pool of up to `size` connections for parallel workers.
    pub fn pool(&self, size: usize) -> Result<Pool> {
        let manager = Manager::from_config(
            self.config.clone(),
            self.tls.connector(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(self.config.get_connect_timeout().copied())
            .build()
            .map_err(|e| {
                Error::db(
                    Engine::Postgres,
                    format!("cannot build connection pool: {e}"),
                )
            })
    }

    /// Takes a connection from `pool`, mapping failures to a clear connect error.
    pub async fn get(&self, pool: &Pool) -> Result<deadpool_postgres::Object> {
        crate::wait::retry_connect(&self.describe(), || self.get_once(pool)).await
    }

    async fn get_once(&self, pool: &Pool) -> Result<deadpool_postgres::Object> {
        pool.get().await.map_err(|e| {
            let message = match &e {
                deadpool_postgres::PoolError::Backend(pg) => self.explain(pg),
                other => other.to_string(),
            };
            self.connect_error(message)
        })
    }

    /// A driver's connect error, with what to do about it when TLS refused the server.
    fn explain(&self, e: &tokio_postgres::Error) -> String {
        let host = self.describe();
        let host = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let message = error_chain(e);
        match self.tls.explain(e, host) {
            Some(hint) => format!("{message}: {hint}"),
            None if message.contains("requires a valid client certificate")
                && self.tls.client_cert.is_none() =>
            {
                format!("{message}; add sslcert=FILE&sslkey=FILE (a certificate the server's CA signed) to the URL")
            }
            None => message,
        }
    }

    pub fn connect_error(&self, message: String) -> Error {
        Error::Connect {
            engine: Engine::Postgres,
            target: self.describe(),
            message: self.url.scrub(&message),
        }
    }
}

/// Whether `url` parses as a PostgreSQL connection URL (dbkeeper's TLS parameters included);
/// the parser's complaint otherwise, which may quote the URL (callers scrub it).
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    super::tls::PgTls::strip(url)?
        .parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `SELECT version()` shortened to "PostgreSQL 15.19".
pub async fn server_version(client: &Client) -> Result<String> {
    let row = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(|e| Error::db(Engine::Postgres, describe_error(&e)))?;
    let v: String = row.get(0);
    Ok(format!(
        "PostgreSQL {}",
        v.split_whitespace().next().unwrap_or(&v)
    ))
}

/// A driver error with its whole cause chain on one line (tokio-postgres puts the useful part,
/// like "Connection refused", in the source).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A server error as PostgreSQL tools print it: message, then detail and hint when present.
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                s.push_str(&format!("\nDETAIL: {detail}"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!("\nHINT: {hint}"));
            }
            s
        }
        None => error_chain(e),
    }
}
