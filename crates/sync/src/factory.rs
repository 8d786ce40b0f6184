//! Turns a stored integration into a live PSA connector, decrypting its private key on the way.
//! Clients are cached per integration (and its last update), so codebase discovery runs once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use casebridge_connector::{ConnectWiseClient, ConnectWiseConfig, Psa, PsaError, Secret};
use casebridge_store::Integration;

use crate::secrets::SecretBox;

pub trait ConnectorFactory: Send + Sync {
    fn connector(&self, integration: &Integration) -> Result<Arc<dyn Psa>, PsaError>;
}

pub struct ConnectWiseFactory {
    secrets: SecretBox,
    timeout: Duration,
    cache: Mutex<HashMap<String, (i64, Arc<ConnectWiseClient>)>>,
}

impl ConnectWiseFactory {
    pub fn new(secrets: SecretBox, timeout: Duration) -> Self {
        Self {
            secrets,
            timeout,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn secrets(&self) -> &SecretBox {
        &self.secrets
    }
}

/// The client configuration of an integration, with its private key decrypted.
pub fn client_config(
    secrets: &SecretBox,
    i: &Integration,
    timeout: Duration,
) -> Result<ConnectWiseConfig, PsaError> {
    let private = match &i.private_key_enc {
        Some(sealed) => secrets.open(sealed).map_err(|e| PsaError::Config {
            message: format!("the stored private key cannot be read: {e}"),
        })?,
        None => {
            return Err(PsaError::Config {
                message: "no private key is set for this support system".into(),
            });
        }
    };
    let mut cfg = ConnectWiseConfig::new(
        &i.site_url,
        &i.company_id,
        &i.public_key,
        Secret::new(private),
        &i.client_id,
    );
    cfg.allow_private_hosts = i.allow_private_hosts;
    cfg.timeout = timeout;
    Ok(cfg)
}

impl ConnectorFactory for ConnectWiseFactory {
    fn connector(&self, i: &Integration) -> Result<Arc<dyn Psa>, PsaError> {
        if i.kind != "connectwise" {
            return Err(PsaError::Config {
                message: format!("support system type {:?} is not supported yet", i.kind),
            });
        }
        let mut cache = self.cache.lock().expect("connector cache poisoned");
        if let Some((stamp, client)) = cache.get(&i.id)
            && *stamp == i.updated_at
        {
            return Ok(client.clone());
        }
        let client = Arc::new(ConnectWiseClient::new(client_config(
            &self.secrets,
            i,
            self.timeout,
        )?)?);
        cache.insert(i.id.clone(), (i.updated_at, client.clone()));
        Ok(client)
    }
}
