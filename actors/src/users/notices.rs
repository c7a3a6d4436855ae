//! Security notices by e-mail: `user.password_changed`, written by a
//! password change ([`crate::users::password_change`]) and run by the queue
//! (its handler is in [`crate::users::jobs`]).
//!
//! The payload names the account and the address and name it had at the
//! change (`userId`, `email`, `name`): the owner is told at the address the
//! change was made under, even if it changes again before the job runs. It
//! holds no secret. The `Message-ID` is derived from the job id, so a
//! retried job resends the same message (a mail client shows it once); a
//! notice may arrive twice, never for a change that did not happen.

use lettre::message::Mailbox;
use lettre::Message;
use mongodb::bson::{doc, oid::ObjectId, Document};

use crate::users::email::Email;

/// The job type a password change writes.
pub const PASSWORD_CHANGED: &str = "user.password_changed";

/// The payload of a `user.password_changed` job for `user`.
pub(crate) fn password_changed_payload(user: ObjectId, email: &str, name: &str) -> Document {
    doc! { "userId": user, "email": email, "name": name }
}

/// The notice to `name` at `email`. Like the welcome, the recipient is
/// built from the parsed address and the name as separate parts.
pub fn password_changed_message(
    from: &Mailbox,
    name: &str,
    email: &Email,
    message_id: &str,
) -> Result<Message, lettre::error::Error> {
    let to = Mailbox::new(Some(name.to_owned()), email.to_address());
    let body = format!(
        "Hello {name},\n\nthe password of your Troupe account {email} was just changed, \
         and every other session of the account was signed out.\n\n\
         If this was not you, reset your password at once and tell us.\n\n— The Troupe team\n"
    );
    crate::mail::plain_text(
        from,
        to,
        message_id,
        "Your Troupe password was changed",
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_goes_to_the_address_and_tells_what_happened() {
        let from: Mailbox = "Troupe <noreply@troupe.local>".parse().unwrap();
        let email = Email::parse("ada@example.com").unwrap();
        let message =
            password_changed_message(&from, "Ada, Countess", &email, "<1@troupe>").unwrap();
        assert_eq!(crate::mail::recipients(&message), ["ada@example.com"]);
        let text = String::from_utf8(message.formatted()).unwrap();
        assert!(text.contains("password was changed"), "{text}");
    }

    #[test]
    fn the_payload_holds_ids_and_the_address_only() {
        let id = ObjectId::new();
        let payload = password_changed_payload(id, "ada@example.com", "Ada");
        let keys: Vec<&str> = payload.keys().map(String::as_str).collect();
        assert_eq!(keys, ["userId", "email", "name"]);
    }
}
