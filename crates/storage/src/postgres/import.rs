//! Moving the accounts of the Redis user store into PostgreSQL.

use keel_domain::{RepositoryError, UserId, UserRepository};

use super::PgUserRepository;
use crate::RedisUserRepository;

/// What [`import_from_redis`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Accounts written to PostgreSQL by this run.
    pub imported: u64,
    /// Accounts that PostgreSQL already held, with the same id and address (an earlier run).
    pub already_present: u64,
    /// Accounts that could not be imported, and why: their address belongs to another account
    /// in PostgreSQL (two spellings that are one address since e-mails are normalised), or
    /// their id does.
    pub conflicts: Vec<(UserId, &'static str)>,
}

/// Copies every account of `source` into `target`, keeping ids, hashes and times. Idempotent:
/// an account already imported is counted, not written again, so an interrupted run can simply
/// be run again. Accounts stay in Redis (with both configured, Keel reads them from
/// PostgreSQL from then on); delete them there once the import is checked.
///
/// # Errors
///
/// When either store cannot answer; what was imported until then stays imported.
pub async fn import_from_redis(
    source: &RedisUserRepository,
    target: &PgUserRepository,
) -> Result<ImportReport, RepositoryError> {
    let mut report = ImportReport::default();
    let mut cursor = 0;
    loop {
        let (next, records) = source.scan_accounts(cursor, 500).await?;
        for record in records {
            let id = record.user.id;
            let email = record.user.email.clone();
            match target.insert(record).await {
                Ok(()) => report.imported += 1,
                Err(RepositoryError::IdTaken) => match target.find_by_id(id).await? {
                    Some(existing) if existing.user.email == email => {
                        report.already_present += 1;
                    }
                    _ => report
                        .conflicts
                        .push((id, "another account in PostgreSQL has this id")),
                },
                Err(RepositoryError::EmailTaken) => match target.find_by_email(&email).await? {
                    Some(existing) if existing.user.id == id => report.already_present += 1,
                    _ => report
                        .conflicts
                        .push((id, "another account in PostgreSQL has this address")),
                },
                Err(other) => return Err(other),
            }
        }
        if next == 0 {
            return Ok(report);
        }
        cursor = next;
    }
}
