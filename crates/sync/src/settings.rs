//! Loads an account's settings from the store and resolves the effective ones (DESIGN §3,
//! "Effective settings") with the pure `routing::resolve_settings`.

use casebridge_domain::routing::{AccountSettings, IntegrationRef, resolve_settings};
use casebridge_domain::{BoardMappings, CriticalityMappings, RoutingSettings};
use casebridge_store::{Account, Integration, MappingResource, Store, StoreError};

pub fn integration_ref(i: &Integration) -> IntegrationRef {
    IntegrationRef {
        id: i.id.clone(),
        account_id: i.account_id.clone(),
        parent_company_identifier: i.parent_company_identifier.clone(),
        active: i.active,
        apply_to_all_subtenants: i.apply_to_all_subtenants,
        uniform_subtenant_mappings: i.uniform_subtenant_mappings,
    }
}

pub async fn board_mappings(
    store: &dyn Store,
    account_id: &str,
) -> Result<Option<BoardMappings>, StoreError> {
    store
        .mapping(account_id, MappingResource::Board)
        .await?
        .map(|v| {
            serde_json::from_value(v)
                .map_err(|e| StoreError::Corrupt(format!("board mappings: {e}")))
        })
        .transpose()
}

pub async fn criticality_mappings(
    store: &dyn Store,
    account_id: &str,
) -> Result<Option<CriticalityMappings>, StoreError> {
    store
        .mapping(account_id, MappingResource::Criticality)
        .await?
        .map(|v| {
            serde_json::from_value(v)
                .map_err(|e| StoreError::Corrupt(format!("criticality mappings: {e}")))
        })
        .transpose()
}

/// Everything `account` has configured of its own.
pub async fn account_settings(
    store: &dyn Store,
    account_id: &str,
) -> Result<AccountSettings, StoreError> {
    let integration = store.integration_of(account_id).await?;
    let (company_mappings, status_mappings) = if integration.is_some() {
        (
            store.company_mappings(account_id).await?,
            store.status_mappings(account_id).await?,
        )
    } else {
        (Vec::new(), Default::default())
    };
    Ok(AccountSettings {
        account_id: account_id.to_string(),
        integration: integration.as_ref().map(integration_ref),
        board_mappings: board_mappings(store, account_id).await?,
        criticality_mappings: criticality_mappings(store, account_id).await?,
        company_mappings,
        status_mappings,
    })
}

/// The effective settings of `account`, and the integration in use (if any).
pub async fn effective_settings(
    store: &dyn Store,
    account: &Account,
) -> Result<(RoutingSettings, Option<Integration>), StoreError> {
    let own = account_settings(store, &account.id).await?;
    let partner = match (&own.integration, &account.parent_id) {
        (None, Some(parent)) => Some(account_settings(store, parent).await?),
        _ => None,
    };
    let settings = resolve_settings(&own, partner.as_ref());
    let integration = match &settings.integration {
        Some((i, _)) => store.integration(&i.id).await?,
        None => None,
    };
    Ok((settings, integration))
}
