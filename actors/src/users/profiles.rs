//! Profiles: reading one, and changing one (which drops the cached copy
//! before it answers).

use mongodb::bson::{doc, DateTime};

use crate::events::Event;
use crate::users::id::UserId;
use crate::users::model::{OwnerProfile, ProfileChanges};
use crate::users::service::UserService;
use crate::users::UserError;

impl UserService {
    /// The whole profile of `id` (`None`: no such user).
    pub(crate) async fn profile(&self, id: UserId) -> Result<Option<OwnerProfile>, UserError> {
        Ok(self
            .users
            .find_one(doc! { "_id": id.object_id() })
            .await?
            .map(|u| u.profile()))
    }

    /// Apply `changes`; the new profile (`None`: no such user).
    pub(crate) async fn update_profile(
        &self,
        id: UserId,
        changes: ProfileChanges,
    ) -> Result<Option<OwnerProfile>, UserError> {
        let mut set = doc! { "updatedAt": DateTime::now() };
        if let Some(name) = changes.name {
            set.insert("name", name);
        }
        if let Some(age) = changes.age {
            set.insert("age", i32::from(age));
        }
        let updated = self
            .users
            .update_one(doc! { "_id": id.object_id() }, doc! { "$set": set })
            .await?;
        if updated.matched_count == 0 {
            return Ok(None);
        }
        // The write is acknowledged by MongoDB; drop the cached copy before
        // acknowledging it to the client, so no reader sees the old profile.
        // If the cache is unreachable the old copy expires within its TTL.
        if let Err(err) = self.cache.invalidate(id.object_id()).await {
            tracing::warn!(target: "cache", user = %id, error = %err, "invalidation failed; the cached profile expires with its TTL");
        }
        self.events.publish(Event::ProfileUpdated {
            user_id: id.to_string(),
        });
        self.profile(id).await
    }
}
