//! What an administrator does when a provider refuses an organisation
//! grant: no person's consent fixes these, an admin console does.

use super::raw::GrantKind;
use super::{Asset, Provider};

/// A refusal of `asset`'s organisation grant, in the provider's words
/// (`error` and `description`), with the admin step that fixes it.
pub fn refused(
    provider: &Provider,
    asset: &Asset,
    error: &str,
    description: Option<&str>,
) -> String {
    let words = format!(
        "{}{}",
        crate::diagnostic::shown(error),
        description
            .map(|d| format!(": {}", crate::diagnostic::shown(d)))
            .unwrap_or_default()
    );
    format!(
        "provider `{}` refused the app's token request ({words}) — {}",
        provider.name,
        admin_step(provider, &asset.username, error)
    )
}

/// The admin step for a refusal whose OAuth `error` code is `error`.
pub fn admin_step(provider: &Provider, mailbox: &str, error: &str) -> String {
    let client = &provider.client_id;
    match provider.grant {
        GrantKind::ServiceAccount if error == "invalid_grant" => format!(
            "the service account's assertion was refused: if its key was deleted or disabled, download a new one (Cloud console → IAM → Service accounts → Keys); check that {mailbox} is a user of the Workspace domain"
        ),
        GrantKind::ServiceAccount => format!(
            "domain-wide delegation is not granted for client {client} with scope {} — add it in the Admin console under Security → API controls → Domain-wide delegation (and check that {mailbox} is a mailbox of the Workspace domain)",
            provider.scopes.join(",")
        ),
        GrantKind::ClientCredentials if error == "invalid_client" => format!(
            "the app's credential is refused: check client_id {client} and its {} (Entra admin center → App registrations → the app → Certificates & secrets)",
            if provider.client_certificate.is_some() {
                "certificate"
            } else {
                "client secret"
            }
        ),
        GrantKind::ClientCredentials => format!(
            "give the app the application permission SMTP.SendAsApp with admin consent, register it in Exchange (New-ServicePrincipal -AppId {client} -ObjectId <the enterprise application's object id>) and grant it the mailbox (Add-MailboxPermission -Identity {mailbox} -User <that service principal> -AccessRights FullAccess)"
        ),
        GrantKind::Consent => "run mailform apply to consent again".to_string(),
    }
}
