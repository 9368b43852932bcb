//! The contract every connector keeps, written once: each test is an
//! `async fn` generic over the [`Server`](super::Server) it runs against,
//! and [`contract_tests!`] makes a `#[tokio::test]` of each for an engine.
//! What differs between engines is said by the `Server` trait (how its SQL
//! spells a table, what it does where engines may differ), never by a copy
//! of a test.

pub mod capture;
pub mod catalog;
pub mod connecting;
pub mod copies;
pub mod upgrades;
pub mod values;
pub mod writes;

use std::sync::Arc;

use tandem_connectors::{Connector, TableSchema};

use super::{install_capture, Server, TestDb};

/// The odd table name every engine must quote and find.
pub const ODD: &str = "Customer \"Orders\" ü";

/// Table `t` (a generated key `id`, a text `v`) in the database, captured,
/// and a connector.
async fn captured_t<S: Server>(db: &TestDb<S>) -> (Arc<dyn Connector>, TableSchema) {
    db.exec(&format!(
        "CREATE TABLE t (id {}, v {})",
        S::GENERATED_KEY,
        S::TEXT
    ))
    .await;
    let connector = db.connector().await;
    let [t] = install_capture(&connector, ["t"]).await;
    (connector, t)
}

/// One `#[tokio::test]` per contract test, for the server type given, in
/// a module `contract` of the test file. Where the server is not there,
/// each test says `SKIPPED` (see [`Server::skipped`](super::Server::skipped))
/// and passes.
macro_rules! contract_tests {
    ($server:ty) => {
        $crate::common::contract::contract_tests!(@each $server;
            capture::captures_inserts_updates_deletes_and_key_changes,
            capture::own_writes_are_not_captured_but_concurrent_ones_are,
            capture::the_marker_never_leaks_into_the_pool,
            capture::change_rows_are_read_per_table_and_deleted_by_identity,
            catalog::describe_reads_odd_names_keys_and_foreign_keys,
            catalog::install_twice_equals_once_and_uninstall_restores_the_catalog,
            catalog::the_catalog_lists_the_tables_and_which_columns_have_defaults,
            connecting::errors_have_the_right_kind,
            connecting::a_configured_password_wins_over_the_urls_and_is_never_shown,
            connecting::waiting_for_changes_never_outlasts_the_poll_interval_by_much,
            copies::a_new_copy_takes_over_the_mapping_row_of_an_earlier_copy,
            copies::links_are_recorded_replaced_and_forgotten,
            copies::batch_inserts_return_generated_uuid_keys_in_order,
            copies::batch_writes_are_not_captured,
            copies::delete_many_and_forget_links_take_one_batch,
            values::values_of_every_type_round_trip_and_null_in_each,
            writes::insert_returns_generated_or_given_keys,
            writes::updates_and_deletes_say_whether_the_row_existed_and_savepoints_undo,
            writes::a_dropped_transaction_releases_its_locks,
            writes::scan_pages_in_key_order_and_fetch_finds_each_row_once,
            writes::rows_are_found_by_any_columns,
            upgrades::from_nothing_to_this_version,
            upgrades::from_version_one_to_this_version_keeping_changes,
            upgrades::a_second_install_runs_no_step,
            upgrades::steps_run_again_over_what_they_did_change_nothing,
            upgrades::a_newer_installation_is_refused,
        );
    };
    (@each $server:ty; $($module:ident :: $test:ident),* $(,)?) => {
        mod contract {
            use super::*;
            $(
                #[tokio::test]
                async fn $test() {
                    if <$server as $crate::common::Server>::skipped(stringify!($test)) {
                        return;
                    }
                    $crate::common::contract::$module::$test::<$server>().await;
                }
            )*
        }
    };
}
pub(crate) use contract_tests;
