//! What makes a `command` value runnable.

use crate::error::{CommandError, quote_found};

/// The longest `command` accepted, in bytes. Commands that need more belong
/// in a script in the pushed tree.
pub const MAX_COMMAND_BYTES: usize = 4096;

/// Checks a command as given in a profile or to [`crate::replace_command`].
pub(crate) fn validate_command(command: &str) -> Result<(), CommandError> {
    if command.trim().is_empty() {
        let found = if command.is_empty() {
            "an empty string".to_owned()
        } else {
            format!("only whitespace {}", quote_found(command))
        };
        return Err(CommandError::NotACommand { found });
    }
    if command.contains('\0') {
        return Err(CommandError::Nul);
    }
    if command.len() > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLong {
            bytes: command.len(),
        });
    }
    Ok(())
}
