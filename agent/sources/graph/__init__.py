"""Microsoft Graph sources: Entra sign-ins and directory audits, Defender alerts and incidents, and service notices."""
