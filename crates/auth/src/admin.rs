//! Administration: who may do what ([`authorize`], the one place that decides), and the
//! administrative use cases over the same ports as the rest of Keel.

use std::collections::HashSet;
use std::sync::Arc;

use keel_domain::{
    AuditEvent, AuditKind, AuditLog, AuditQuery, Clock, Email, User, UserChange, UserId, UserQuery,
    UserRecord, UserRepository,
};
use keel_session::Session;

use crate::accounts::AccountError;
use crate::service::{Auth, Principal};

/// The role that administers accounts.
pub const ADMIN_ROLE: &str = "admin";

/// What a caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// List and search accounts.
    ListUsers,
    /// Read one account and its sessions.
    ReadUser(UserId),
    /// Disable an account (its sessions are revoked).
    DisableUser(UserId),
    /// Enable an account again.
    EnableUser(UserId),
    /// Revoke every session of an account.
    RevokeSessions(UserId),
    /// Read the audit log.
    ReadAudit,
}

/// Who is asking: an account and the roles it holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The account.
    pub user_id: UserId,
    /// Its roles, as [`Admin::actor`] resolved them (stored roles, and `admin` from
    /// `admin.emails`).
    pub roles: Vec<String>,
}

impl Actor {
    fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|held| held == role)
    }
}

/// The authorization policy of Keel, as a function of (actor, action): every administrative
/// route asks here, and nothing else decides. Administrators may do every action but disable
/// their own account (which would lock the last administrator out); everyone else may do none.
///
/// # Errors
/// [`AccountError::Forbidden`] when the actor may not.
pub fn authorize(actor: &Actor, action: Action) -> Result<(), AccountError> {
    let allowed = actor.has(ADMIN_ROLE)
        && match action {
            Action::DisableUser(target) => target != actor.user_id,
            Action::ListUsers
            | Action::ReadUser(_)
            | Action::EnableUser(_)
            | Action::RevokeSessions(_)
            | Action::ReadAudit => true,
        };
    if allowed {
        Ok(())
    } else {
        Err(AccountError::Forbidden)
    }
}

/// Who holds the `admin` role by configuration.
#[derive(Debug, Clone, Default)]
pub struct AdminPolicy {
    /// Canonical addresses whose accounts are administrators.
    pub emails: HashSet<String>,
    /// Whether such an account must have verified its address first (production: yes, or
    /// anyone could register an administrator's address before its owner does).
    pub require_verified: bool,
}

impl AdminPolicy {
    /// The policy for these configured addresses (compared canonically); unparsable ones are
    /// ignored (the configuration checks them when it loads).
    pub fn new<'a>(emails: impl IntoIterator<Item = &'a str>, require_verified: bool) -> Self {
        Self {
            emails: emails
                .into_iter()
                .filter_map(|email| Email::parse_lenient(email).ok())
                .map(|email| email.canonical().to_owned())
                .collect(),
            require_verified,
        }
    }

    /// The roles `user` holds: its stored ones, plus `admin` when its address is configured
    /// (and verified, when that is required).
    pub fn roles_of(&self, user: &User) -> Vec<String> {
        let mut roles = user.roles.clone();
        let configured = self.emails.contains(user.email.canonical())
            && (!self.require_verified || user.email_verified());
        if configured && !roles.iter().any(|role| role == ADMIN_ROLE) {
            roles.push(ADMIN_ROLE.to_owned());
        }
        roles
    }
}

/// One account as an administrator sees it.
#[derive(Debug)]
pub struct AdminUserView {
    /// The account, with its effective roles.
    pub user: User,
    /// Whether it is disabled.
    pub disabled: bool,
    /// Its live sessions (empty in lists).
    pub sessions: Vec<Session>,
}

/// The administrative use cases. Cheap to clone.
#[derive(Clone)]
pub struct Admin {
    users: Arc<dyn UserRepository>,
    audit: Arc<dyn AuditLog>,
    auth: Auth,
    policy: Arc<AdminPolicy>,
    clock: Arc<dyn Clock>,
}

impl Admin {
    /// The use cases over these ports, ending access through `auth`.
    pub fn new(
        users: Arc<dyn UserRepository>,
        audit: Arc<dyn AuditLog>,
        auth: Auth,
        policy: AdminPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            users,
            audit,
            auth,
            policy: Arc::new(policy),
            clock,
        }
    }

    /// The actor behind `principal`, with the roles it holds now (read from the store, so a
    /// role granted or an address verified counts at once).
    ///
    /// # Errors
    /// [`AccountError::Gone`] when the account no longer exists.
    pub async fn actor(&self, principal: &Principal) -> Result<Actor, AccountError> {
        let record = self
            .users
            .find_by_id(principal.user_id)
            .await?
            .ok_or(AccountError::Gone)?;
        Ok(Actor {
            user_id: record.user.id,
            roles: self.policy.roles_of(&record.user),
        })
    }

    /// The user as the API shows it: with its effective roles.
    pub fn view(&self, record: UserRecord, sessions: Vec<Session>) -> AdminUserView {
        let mut user = record.user;
        user.roles = self.policy.roles_of(&user);
        AdminUserView {
            user,
            disabled: record.disabled_at.is_some(),
            sessions,
        }
    }

    /// A page of accounts, newest first.
    ///
    /// # Errors
    /// [`AccountError::Forbidden`] unless the actor may list accounts.
    pub async fn list_users(
        &self,
        actor: &Actor,
        query: UserQuery,
    ) -> Result<Vec<AdminUserView>, AccountError> {
        authorize(actor, Action::ListUsers)?;
        let records = self.users.list(query).await?;
        Ok(records
            .into_iter()
            .map(|record| self.view(record, Vec::new()))
            .collect())
    }

    /// One account and its live sessions.
    ///
    /// # Errors
    /// [`AccountError::Forbidden`]; [`AccountError::NotFound`] when there is no such account.
    pub async fn get_user(&self, actor: &Actor, id: UserId) -> Result<AdminUserView, AccountError> {
        authorize(actor, Action::ReadUser(id))?;
        let record = self
            .users
            .find_by_id(id)
            .await?
            .ok_or(AccountError::NotFound)?;
        let sessions = self.auth.list_sessions(id).await?;
        Ok(self.view(record, sessions))
    }

    /// Disables account `id`: it cannot log in, and every session it has is revoked at once.
    ///
    /// # Errors
    /// [`AccountError::Forbidden`] (also for the actor's own account);
    /// [`AccountError::NotFound`].
    pub async fn disable(&self, actor: &Actor, id: UserId) -> Result<(), AccountError> {
        authorize(actor, Action::DisableUser(id))?;
        self.auth
            .disable_user(id, Some(actor.user_id))
            .await
            .map_err(not_found)?;
        Ok(())
    }

    /// Enables account `id` again.
    ///
    /// # Errors
    /// [`AccountError::Forbidden`]; [`AccountError::NotFound`].
    pub async fn enable(&self, actor: &Actor, id: UserId) -> Result<(), AccountError> {
        authorize(actor, Action::EnableUser(id))?;
        self.auth
            .enable_user(id, Some(actor.user_id))
            .await
            .map_err(not_found)
    }

    /// Revokes every session of account `id` (tokens, cookies and sockets on every instance).
    ///
    /// # Errors
    /// [`AccountError::Forbidden`]; [`AccountError::NotFound`].
    pub async fn revoke_sessions(&self, actor: &Actor, id: UserId) -> Result<(), AccountError> {
        authorize(actor, Action::RevokeSessions(id))?;
        if self.users.find_by_id(id).await?.is_none() {
            return Err(AccountError::NotFound);
        }
        let revoked = self.auth.revoke_all_by(id, actor.user_id).await?;
        tracing::info!(user_id = %id, actor_id = %actor.user_id, sessions = revoked, "sessions revoked by an administrator");
        Ok(())
    }

    /// A page of the audit log.
    ///
    /// # Errors
    /// [`AccountError::Forbidden`] unless the actor may read it.
    pub async fn audit(
        &self,
        actor: &Actor,
        query: AuditQuery,
    ) -> Result<Vec<AuditEvent>, AccountError> {
        authorize(actor, Action::ReadAudit)?;
        Ok(self.audit.query(query).await?)
    }

    /// Grants `role` to the account with `email` (`server admin grant`), recorded in the
    /// audit log without an actor (the operator ran it). Returns the account.
    ///
    /// # Errors
    /// [`AccountError::NotFound`] when no account has the address.
    pub async fn grant(&self, email: &str, role: &str) -> Result<User, AccountError> {
        let email = Email::parse_lenient(email).map_err(|_| AccountError::NotFound)?;
        let record = self
            .users
            .find_by_email(&email)
            .await?
            .ok_or(AccountError::NotFound)?;
        let now = self.clock.now();
        let event =
            AuditEvent::new(AuditKind::RoleGranted, Some(record.user.id), now).with("role", role);
        let audited = self
            .users
            .update_audited(
                record.user.id,
                UserChange::GrantRole(role.to_owned()),
                now,
                event,
            )
            .await?;
        let updated = audited.outcome.ok_or(AccountError::NotFound)?;
        self.auth.record(audited.unrecorded).await;
        Ok(updated.user)
    }
}

fn not_found(error: crate::AuthError) -> AccountError {
    match error {
        crate::AuthError::NotFound => AccountError::NotFound,
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(roles: &[&str]) -> Actor {
        Actor {
            user_id: UserId::generate(),
            roles: roles.iter().map(|&r| r.to_owned()).collect(),
        }
    }

    #[test]
    fn only_administrators_administer_and_none_disables_itself() {
        let admin = actor(&[ADMIN_ROLE]);
        let user = actor(&[]);
        let other = UserId::generate();
        for action in [
            Action::ListUsers,
            Action::ReadUser(other),
            Action::DisableUser(other),
            Action::EnableUser(other),
            Action::RevokeSessions(other),
            Action::ReadAudit,
        ] {
            assert!(authorize(&admin, action).is_ok(), "{action:?}");
            assert!(
                matches!(authorize(&user, action), Err(AccountError::Forbidden)),
                "{action:?}"
            );
        }
        assert!(matches!(
            authorize(&admin, Action::DisableUser(admin.user_id)),
            Err(AccountError::Forbidden)
        ));
        assert!(authorize(&admin, Action::RevokeSessions(admin.user_id)).is_ok());
    }

    #[test]
    fn a_configured_address_is_an_administrator_once_verified_when_that_is_required() {
        let email = Email::parse("Root@Example.com").unwrap();
        let mut user = User::new(
            UserId::generate(),
            email.clone(),
            keel_domain::DisplayName::from_email(&email),
            time::OffsetDateTime::now_utc(),
        );
        let strict = AdminPolicy::new(["root@example.COM"], true);
        let lenient = AdminPolicy::new(["root@example.com"], false);
        assert!(strict.roles_of(&user).is_empty());
        assert_eq!(lenient.roles_of(&user), [ADMIN_ROLE]);
        user.email_verified_at = Some(time::OffsetDateTime::now_utc());
        assert_eq!(strict.roles_of(&user), [ADMIN_ROLE]);
        // A stored role is kept, once.
        user.roles = vec![ADMIN_ROLE.to_owned()];
        assert_eq!(strict.roles_of(&user), [ADMIN_ROLE]);
        assert_eq!(AdminPolicy::default().roles_of(&user), [ADMIN_ROLE]);
    }
}
