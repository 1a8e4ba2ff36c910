"""Who may use the gateway's web page and commands: accounts, roles, sign-in and the audit log."""
