//! The sync engine: what to sync (`plan`), and when and how (`tail`,
//! `apply`, `first_sync`, `links`, `runner`).

pub mod apply;
mod background;
pub mod catalog;
pub mod drift;
pub mod events;
pub mod first_sync;
pub mod links;
pub mod preflight;
pub mod reconcile;
pub mod report;
#[cfg(test)]
pub(crate) mod rig;
pub mod runner;
pub mod tail;

use std::collections::HashMap;
use std::sync::Arc;

use tandem_connectors::{Connector, ConnectorError, TableName, TableSchema};

use crate::config::{Config, Side};
use crate::mapping::plan::{self, PairId, Plan, PlanProblem};
use crate::state::State;
use crate::store::StoreError;

/// Why a sync step failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// One endpoint failed. (The connector's error is in the message, and
    /// so not reported again as the source.)
    #[error("{side} ({engine}): {error}")]
    Endpoint {
        /// Which side.
        side: Side,
        /// Its engine, for the message.
        engine: tandem_connectors::Engine,
        /// The connector's error.
        error: ConnectorError,
    },
    /// The state directory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The integration cannot run as configured.
    #[error("{0}")]
    Setup(String),
    /// Neither side could be reached: both errors, a line each.
    #[error("{message}")]
    Unreachable {
        /// Both errors.
        message: String,
        /// Whether both are worth a retry.
        retryable: bool,
    },
}

impl SyncError {
    /// Whether retrying later may succeed without an operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            SyncError::Endpoint { error, .. } => error.is_retryable(),
            // A write or flush that failed (disk full, I/O error) may work
            // once space returns; a corrupt or locked store will not.
            SyncError::Store(StoreError::Backend(_)) => true,
            SyncError::Unreachable { retryable, .. } => *retryable,
            SyncError::Store(_) | SyncError::Setup(_) => false,
        }
    }
}

/// Result of a sync step.
pub type SyncResult<T> = Result<T, SyncError>;

/// Both endpoints connected and every table pair described and planned.
pub struct Integration {
    /// The configuration.
    pub config: Config,
    /// The connectors (source, target).
    pub endpoints: [Arc<dyn Connector>; 2],
    /// The plan.
    pub plan: Plan,
    /// Problems found while planning (fatal ones stop `run`).
    pub problems: Vec<PlanProblem>,
    routes: [HashMap<String, Route>; 2],
}

/// Where a change row of a synced table goes, by its table: built once
/// when the integration is planned, looked up for every change row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The table of the pair with this index.
    Pair(PairId),
    /// An extra table the pair's rows are split into (its index in the
    /// pair's splits).
    Split {
        /// The pair.
        pair: PairId,
        /// The split.
        split: usize,
    },
}

impl Route {
    /// The pair the change belongs to.
    pub fn pair(self) -> PairId {
        match self {
            Route::Pair(pair) | Route::Split { pair, .. } => pair,
        }
    }
}

impl Integration {
    /// Connects both sides, finds and describes every configured table,
    /// and plans the pairs. What is wrong with the tables or the mapping
    /// is kept in [`Integration::problems`], every problem found; only a
    /// failure to reach a side (or to read its catalog) is an error.
    pub async fn connect(config: Config) -> SyncResult<Integration> {
        let (source, target) = tokio::join!(
            connect_side(&config, Side::Source),
            connect_side(&config, Side::Target)
        );
        let endpoints = match (source, target) {
            (Ok(source), Ok(target)) => [source, target],
            (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e),
            // Both down: both named.
            (Err(source), Err(target)) => {
                return Err(SyncError::Unreachable {
                    retryable: source.is_retryable() && target.is_retryable(),
                    message: format!("{source}\n{target}"),
                })
            }
        };
        Integration::over(config, endpoints).await
    }

    /// [`Integration::connect`] over connectors already made (the agent's
    /// unit tests wrap them in fault-injecting ones).
    pub async fn over(
        config: Config,
        endpoints: [Arc<dyn Connector>; 2],
    ) -> SyncResult<Integration> {
        let mut problems = Vec::new();
        let mut described: [Vec<Option<TableSchema>>; 2] = Default::default();
        let mut lookups = plan::LookupTables::new();
        for side in Side::BOTH {
            let connector = endpoints[side.index()].as_ref();
            let (tables, extra) = catalog::describe_side(&config, side, connector, &mut problems)
                .await
                .map_err(|e| SyncError::Endpoint {
                    side,
                    engine: connector.engine(),
                    error: e.context(config.path.display().to_string()),
                })?;
            catalog::shared_tables(&config, side, &tables, &mut problems);
            described[side.index()] = tables;
            lookups.extend(extra);
        }
        let [sources, targets] = described;
        let schemas = sources
            .into_iter()
            .zip(targets)
            .map(|pair| match pair {
                (Some(source), Some(target)) => Some([source, target]),
                _ => None,
            })
            .collect();
        let (plan, plan_problems) = Plan::build(&config.tables, schemas, &lookups, config.names);
        problems.extend(plan_problems);
        let routes = Side::BOTH.map(|side| routes(&plan, side));
        Ok(Integration {
            config,
            endpoints,
            plan,
            problems,
            routes,
        })
    }

    /// The connector of `side`.
    pub fn endpoint(&self, side: Side) -> &Arc<dyn Connector> {
        &self.endpoints[side.index()]
    }

    /// Wraps a connector error of `side`.
    pub fn error(&self, side: Side) -> impl Fn(ConnectorError) -> SyncError + '_ {
        let engine = self.endpoint(side).engine();
        move |error| SyncError::Endpoint {
            side,
            engine,
            error,
        }
    }

    /// The synced tables of `side`.
    pub fn tables(&self, side: Side) -> Vec<TableName> {
        self.plan
            .pairs
            .iter()
            .map(|p| p.table(side).name.clone())
            .chain(self.split_tables(side).map(|(_, _, t)| t.name.clone()))
            .collect()
    }

    /// The synced tables of `side` whose pair `keep` accepts (by index).
    pub fn tables_of(&self, side: Side, keep: impl Fn(PairId) -> bool) -> Vec<TableName> {
        self.plan
            .enumerate()
            .filter(|(id, _)| keep(*id))
            .map(|(_, p)| p.table(side).name.clone())
            .chain(
                self.split_tables(side)
                    .filter(|(p, _, _)| keep(*p))
                    .map(|(_, _, t)| t.name.clone()),
            )
            .collect()
    }

    /// The pair a change row of `side` belongs to: that of its table, or
    /// of the pair whose rows are split into it.
    pub fn pair_of_change(&self, side: Side, table: &str) -> Option<PairId> {
        self.route(side, table).map(Route::pair)
    }

    /// The table a `route` of `side` leads to.
    pub fn routed_table(&self, side: Side, route: Route) -> &TableSchema {
        let pair = &self.plan.pairs[route.pair()];
        match route {
            Route::Pair(_) => pair.table(side),
            Route::Split { split, .. } => &pair.splits[split].table,
        }
    }

    /// Where a change row of `side` recorded for `table` goes.
    pub fn route(&self, side: Side, table: &str) -> Option<Route> {
        self.routes[side.index()].get(table).copied()
    }

    /// The extra tables rows are split into on `side`: (pair, split, table).
    pub fn split_tables(
        &self,
        side: Side,
    ) -> impl Iterator<Item = (PairId, usize, &TableSchema)> + '_ {
        self.plan.enumerate().flat_map(move |(p, pair)| {
            pair.splits
                .iter()
                .enumerate()
                .filter(move |(_, s)| s.side == side)
                .map(move |(i, s)| (p, i, &s.table))
        })
    }

    /// The pair whose table on `side` is recorded in change rows as `table`.
    pub fn pair_of(&self, side: Side, table: &str) -> Option<PairId> {
        match self.route(side, table)? {
            Route::Pair(pair) => Some(pair),
            Route::Split { .. } => None,
        }
    }

    /// Fails, naming every one, when planning found problems that make
    /// syncing impossible.
    pub fn ensure_runnable(&self) -> SyncResult<()> {
        refuse(&self.config, &self.problems)
    }
}

/// Fails with every fatal problem of `problems`, one line each naming the
/// config file; `Ok` when there is none.
pub fn refuse(config: &Config, problems: &[PlanProblem]) -> SyncResult<()> {
    let lines: Vec<String> = problems
        .iter()
        .filter(|p| p.fatal)
        .map(|p| format!("{}: {}", config.path.display(), p.message))
        .collect();
    if lines.is_empty() {
        Ok(())
    } else {
        Err(SyncError::Setup(lines.join("\n")))
    }
}

/// The route table of `side`: each synced table's name, as change rows
/// record it, to its pair or split. A pair's own table wins over a split
/// table of the same name (a plan never has both).
fn routes(plan: &Plan, side: Side) -> HashMap<String, Route> {
    let mut routes = HashMap::new();
    for (pair, planned) in plan.enumerate() {
        for (split, extra) in planned.splits.iter().enumerate() {
            if extra.side == side {
                routes.insert(extra.table.name.to_string(), Route::Split { pair, split });
            }
        }
    }
    for (pair, planned) in plan.enumerate() {
        routes.insert(planned.table(side).name.to_string(), Route::Pair(pair));
    }
    routes
}

async fn connect_side(config: &Config, side: Side) -> SyncResult<Arc<dyn Connector>> {
    let endpoint = config.endpoint(side);
    tandem_connectors::connect(endpoint)
        .await
        .map_err(|error| SyncError::Endpoint {
            side,
            engine: endpoint.engine,
            error,
        })
}

/// An integration with its state: the thing that syncs. Its passes go
/// through two stages, each owning what it keeps between passes: the
/// tailer (change table -> change log -> acknowledgement, [`tail`]) and the
/// applier (change log -> mapping -> write -> settlement, [`apply`]); the
/// runner ([`runner`]) decides when, and keeps the run's own state.
pub struct Agent {
    /// Endpoints and plan.
    pub integration: Integration,
    /// The state directory.
    pub state: State,
    /// Progress, for the systemd watchdog.
    pub heartbeat: crate::service::Heartbeat,
    /// What the tailer keeps between passes.
    pub tail_state: tail::TailerState,
    /// What the applier keeps between passes.
    pub apply_state: apply::ApplierState,
    /// What the runner keeps between passes: pauses, the outage being
    /// retried, when the tables were last compared with the plan.
    pub run_state: runner::RunState,
}

impl Agent {
    /// An agent over a connected integration and an opened state.
    pub fn new(integration: Integration, state: State) -> Agent {
        Agent {
            integration,
            state,
            heartbeat: Default::default(),
            tail_state: Default::default(),
            apply_state: Default::default(),
            run_state: Default::default(),
        }
    }
}
