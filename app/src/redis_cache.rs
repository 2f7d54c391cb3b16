//! The cache: the Redis master found through Sentinel. Any failed call drops the connection,
//! so the next call asks the Sentinels again and follows a failover.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, FromRedisValue};
use tokio::sync::Mutex;

use crate::catalog::Cache;
use crate::config::CacheConfig;

pub struct SentinelCache {
    sentinel: Mutex<SentinelClient>,
    connection: Mutex<Option<MultiplexedConnection>>,
    timeouts: AsyncConnectionConfig,
}

impl SentinelCache {
    pub fn new(config: &CacheConfig, timeout: Duration) -> redis::RedisResult<SentinelCache> {
        let sentinels: Vec<String> = config.sentinels.iter().map(|s| format!("redis://{s}")).collect();
        let client = SentinelClient::build(sentinels, config.master_name.clone(), None, SentinelServerType::Master)?;
        Ok(SentinelCache {
            sentinel: Mutex::new(client),
            connection: Mutex::new(None),
            timeouts: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout)),
        })
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut connection = self.connection.lock().await;
        if let Some(open) = connection.as_ref() {
            return Ok(open.clone());
        }
        // asks the Sentinels for the master and checks its role before using it
        let open = self.sentinel.lock().await.get_async_connection_with_config(&self.timeouts).await?;
        *connection = Some(open.clone());
        Ok(open)
    }

    async fn run<T: FromRedisValue>(&self, command: redis::Cmd) -> Result<T, String> {
        let mut connection = self.connection().await.map_err(|e| e.to_string())?;
        match command.query_async(&mut connection).await {
            Ok(value) => Ok(value),
            Err(error) => {
                // a dropped connection, a timeout or READONLY from a demoted master
                *self.connection.lock().await = None;
                Err(error.to_string())
            }
        }
    }
}

impl Cache for SentinelCache {
    async fn get(&self, key: &str) -> Result<Option<String>, String> {
        self.run(redis::cmd("GET").arg(key).clone()).await
    }

    async fn set(&self, key: &str, value: String, ttl: Duration) -> Result<(), String> {
        self.run(redis::cmd("SET").arg(key).arg(value).arg("EX").arg(ttl.as_secs().max(1)).clone()).await
    }

    async fn del(&self, keys: &[String]) -> Result<(), String> {
        self.run::<i64>(redis::cmd("DEL").arg(keys).clone()).await.map(drop)
    }
}
