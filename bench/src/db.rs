//! Throw-away databases on the local servers, dropped with the value.

use anyhow::{bail, Context, Result};
use mysql_async::prelude::Queryable;

/// A database server kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The local PostgreSQL.
    Postgres,
    /// The local MariaDB (or MySQL).
    Mysql,
}

impl Engine {
    /// The agent config's `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
        }
    }

    /// The name people know it by.
    pub fn label(self) -> &'static str {
        match self {
            Engine::Postgres => "PostgreSQL",
            Engine::Mysql => "MariaDB",
        }
    }

    /// The name of Tandem's change table in a database of this engine.
    pub fn change_table(self) -> &'static str {
        match self {
            Engine::Postgres => "tandem.changes",
            Engine::Mysql => "tandem_changes",
        }
    }
}

/// Where the servers are: admin URLs whose login may create databases.
#[derive(Debug, Clone)]
pub struct Servers {
    /// PostgreSQL admin URL.
    pub postgres: String,
    /// MariaDB admin URL.
    pub mysql: String,
}

impl Servers {
    fn admin(&self, engine: Engine) -> &str {
        match engine {
            Engine::Postgres => &self.postgres,
            Engine::Mysql => &self.mysql,
        }
    }
}

/// A client of one database.
pub enum Client {
    /// PostgreSQL.
    Pg(tokio_postgres::Client),
    /// MariaDB.
    My(mysql_async::Pool),
}

/// A database with a unique name, dropped when the value is.
pub struct Db {
    /// Its engine.
    pub engine: Engine,
    /// Its name.
    pub name: String,
    /// The URL the agent and the drivers use.
    pub url: String,
    admin: String,
    client: Client,
}

fn with_database(url: &str, db: &str) -> Result<String> {
    let mut parsed = url::Url::parse(url).with_context(|| format!("server URL {url:?}"))?;
    parsed.set_path(&format!("/{db}"));
    Ok(parsed.to_string())
}

/// A new PostgreSQL connection to `url`.
pub async fn pg_connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connect to PostgreSQL at {}", redact(url)))?;
    tokio::spawn(conn);
    Ok(client)
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

impl Db {
    /// Creates `tandem_bench_<label>_<unique>` on the server of `engine`.
    pub async fn create(servers: &Servers, engine: Engine, label: &str) -> Result<Db> {
        let name = format!(
            "tandem_bench_{label}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let admin = servers.admin(engine).to_owned();
        let url = with_database(&admin, &name)?;
        let client = match engine {
            Engine::Postgres => {
                pg_connect(&admin)
                    .await?
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .with_context(|| format!("create database {name}"))?;
                Client::Pg(pg_connect(&url).await?)
            }
            Engine::Mysql => {
                let pool = mysql_async::Pool::new(admin.as_str());
                let mut conn = pool
                    .get_conn()
                    .await
                    .with_context(|| format!("connect to MariaDB at {}", redact(&admin)))?;
                conn.query_drop(format!(
                    "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                ))
                .await
                .with_context(|| format!("create database {name}"))?;
                drop(conn);
                pool.disconnect().await?;
                Client::My(mysql_async::Pool::new(url.as_str()))
            }
        };
        Ok(Db {
            engine,
            name,
            url,
            admin,
            client,
        })
    }

    /// Runs SQL (several statements for PostgreSQL, one for MariaDB).
    pub async fn exec(&self, sql: &str) -> Result<()> {
        match &self.client {
            Client::Pg(c) => c.batch_execute(sql).await.map_err(anyhow::Error::from),
            Client::My(pool) => {
                let mut conn = pool.get_conn().await?;
                conn.query_drop(sql).await.map_err(anyhow::Error::from)
            }
        }
        .with_context(|| format!("{}: {sql}", self.name))
    }

    /// The single integer a query returns (a count, usually).
    pub async fn int(&self, sql: &str) -> Result<i64> {
        let value = match &self.client {
            Client::Pg(c) => c
                .query_one(sql, &[])
                .await
                .map_err(anyhow::Error::from)
                .and_then(|row| row.try_get::<_, i64>(0).map_err(anyhow::Error::from)),
            Client::My(pool) => {
                let mut conn = pool.get_conn().await?;
                match conn.query_first::<i64, _>(sql).await {
                    Ok(Some(v)) => Ok(v),
                    Ok(None) => Err(anyhow::anyhow!("no row")),
                    Err(e) => Err(e.into()),
                }
            }
        };
        value.with_context(|| format!("{}: {sql}", self.name))
    }

    /// A MariaDB connection from the pool.
    pub async fn my_conn(&self) -> Result<mysql_async::Conn> {
        match &self.client {
            Client::My(pool) => Ok(pool.get_conn().await?),
            Client::Pg(_) => bail!("{} is a PostgreSQL database", self.name),
        }
    }

    /// A new PostgreSQL connection of its own.
    pub async fn pg_conn(&self) -> Result<tokio_postgres::Client> {
        pg_connect(&self.url).await
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let (engine, name, admin) = (self.engine, self.name.clone(), self.admin.clone());
        // Dropping needs async I/O; a thread of its own, waited for, so that
        // no database outlives the benchmark.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                match engine {
                    Engine::Postgres => {
                        if let Ok(client) = pg_connect(&admin).await {
                            let _ = client
                                .batch_execute(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .await;
                        }
                    }
                    Engine::Mysql => {
                        let pool = mysql_async::Pool::new(admin.as_str());
                        if let Ok(mut conn) = pool.get_conn().await {
                            let _ = conn
                                .query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                                .await;
                        }
                        let _ = pool.disconnect().await;
                    }
                }
            });
        })
        .join();
    }
}
