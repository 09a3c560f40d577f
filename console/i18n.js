// Every string of the console, one catalogue per language. `t(key, vars)` fills `{name}`.
export const catalogues = {
  en: {
    title: "recovery-info",
    nav_security_info: "Security info",
    nav_sign_in: "Sign in",
    nav_sign_out: "Sign out",
    language: "Language",
    dev_banner: "Development sign-in: this server mints the token itself. It is off when an identity provider is configured.",
    sign_in_heading: "Sign in",
    tenant: "Tenant (organisation) id",
    role: "Role",
    role_self_service: "Myself (self-service)",
    role_authentication_admin: "Authentication administrator",
    role_auditor: "Auditor",
    role_dashboard: "Dashboard",
    admin: "Administrator id",
    subject: "Your name (the token's subject)",
    sign_in: "Sign in",
    signed_in_as: "Signed in as {subject} ({role})",
    no_sign_in: "Sign-in is not available: configure an identity provider.",
    security_info_heading: "Security info",
    security_info_intro: "These are the methods you use to sign in and to reset your password.",
    which_admin: "Administrator",
    show: "Show",
    no_methods: "No methods yet.",
    add_method: "Add method",
    kind: "Method",
    kind_mobile_phone: "Phone",
    kind_alternate_phone: "Alternate phone",
    kind_office_phone: "Office phone",
    kind_email: "Email",
    value_phone: "Phone number",
    value_email: "Email address",
    save: "Save",
    cancel: "Cancel",
    change: "Change",
    remove: "Remove",
    confirm_remove: "Remove {kind}?",
    eligible: "You can reset your password with {methods}.",
    not_eligible_email: "Add an alternate email to be able to reset your password.",
    not_eligible_mobile_phone: "Add a phone to be able to reset your password.",
    not_eligible_another_method: "Add one more method to be able to reset your password.",
    and: " and ",
    changed_elsewhere: "This was changed elsewhere in the meantime.",
    reload: "Reload",
    saved: "Saved.",
    loading: "Loading…",
    error_generic: "Something went wrong ({code}). Try again.",
    err_invalid_phone_number: "That is not a phone number we can use. Type it with the country code, for example +45 20 12 34 56.",
    err_phone_number_type_not_allowed: "This kind of number cannot be used here (for example a landline for a mobile phone).",
    err_invalid_email: "That is not an email address we can use.",
    err_email_in_tenant_domain: "Use an email address outside your organisation: the alternate email must still work if your account is taken over.",
    err_extension_not_allowed: "Only an office phone may have an extension.",
    err_method_kind_exists: "You already have a method of this kind: change it instead.",
    err_alternate_phone_requires_mobile: "Add a phone first: the alternate phone backs it up.",
    err_mobile_phone_has_alternate: "Remove the alternate phone first.",
    err_admin_offboarded: "This administrator was offboarded: nothing can change.",
    err_step_up_required: "Sign in again to change security info (your sign-in is too old or not strong enough).",
    err_forbidden: "You may not do this.",
    err_unauthorized: "Your sign-in expired. Sign in again.",
  },
  da: {
    title: "recovery-info",
    nav_security_info: "Sikkerhedsoplysninger",
    nav_sign_in: "Log på",
    nav_sign_out: "Log af",
    language: "Sprog",
    dev_banner: "Udviklings-login: denne server udsteder selv tokenet. Det er slået fra, når en identitetsudbyder er sat op.",
    sign_in_heading: "Log på",
    tenant: "Lejer-id (organisation)",
    role: "Rolle",
    role_self_service: "Mig selv (selvbetjening)",
    role_authentication_admin: "Godkendelsesadministrator",
    role_auditor: "Revisor",
    role_dashboard: "Dashboard",
    admin: "Administrator-id",
    subject: "Dit navn (tokenets subjekt)",
    sign_in: "Log på",
    signed_in_as: "Logget på som {subject} ({role})",
    no_sign_in: "Login er ikke tilgængeligt: sæt en identitetsudbyder op.",
    security_info_heading: "Sikkerhedsoplysninger",
    security_info_intro: "Det er de metoder, du bruger til at logge på og til at nulstille din adgangskode.",
    which_admin: "Administrator",
    show: "Vis",
    no_methods: "Ingen metoder endnu.",
    add_method: "Tilføj metode",
    kind: "Metode",
    kind_mobile_phone: "Telefon",
    kind_alternate_phone: "Alternativ telefon",
    kind_office_phone: "Arbejdstelefon",
    kind_email: "E-mail",
    value_phone: "Telefonnummer",
    value_email: "E-mailadresse",
    save: "Gem",
    cancel: "Annuller",
    change: "Skift",
    remove: "Fjern",
    confirm_remove: "Fjern {kind}?",
    eligible: "Du kan nulstille din adgangskode med {methods}.",
    not_eligible_email: "Tilføj en alternativ e-mail for at kunne nulstille din adgangskode.",
    not_eligible_mobile_phone: "Tilføj en telefon for at kunne nulstille din adgangskode.",
    not_eligible_another_method: "Tilføj én metode mere for at kunne nulstille din adgangskode.",
    and: " og ",
    changed_elsewhere: "Det er blevet ændret et andet sted i mellemtiden.",
    reload: "Genindlæs",
    saved: "Gemt.",
    loading: "Indlæser…",
    error_generic: "Noget gik galt ({code}). Prøv igen.",
    err_invalid_phone_number: "Det er ikke et telefonnummer, vi kan bruge. Skriv det med landekode, for eksempel +45 20 12 34 56.",
    err_phone_number_type_not_allowed: "Denne slags nummer kan ikke bruges her (for eksempel en fastnettelefon som mobiltelefon).",
    err_invalid_email: "Det er ikke en e-mailadresse, vi kan bruge.",
    err_email_in_tenant_domain: "Brug en e-mailadresse uden for din organisation: den alternative e-mail skal virke, selv hvis din konto bliver overtaget.",
    err_extension_not_allowed: "Kun en arbejdstelefon må have et lokalnummer.",
    err_method_kind_exists: "Du har allerede en metode af denne slags: skift den i stedet.",
    err_alternate_phone_requires_mobile: "Tilføj først en telefon: den alternative telefon er reserve for den.",
    err_mobile_phone_has_alternate: "Fjern først den alternative telefon.",
    err_admin_offboarded: "Denne administrator er lukket: intet kan ændres.",
    err_step_up_required: "Log på igen for at ændre sikkerhedsoplysninger (dit login er for gammelt eller ikke stærkt nok).",
    err_forbidden: "Det må du ikke.",
    err_unauthorized: "Dit login er udløbet. Log på igen.",
  },
};

let current = "en";

/// The language of the browser (its Accept-Language), if there is a catalogue for it.
export function preferred(languages) {
  for (const tag of languages || []) {
    const base = tag.toLowerCase().split("-")[0];
    if (catalogues[base]) return base;
  }
  return "en";
}

export function setLanguage(lang) {
  current = catalogues[lang] ? lang : "en";
  document.documentElement.lang = current;
}

export function language() {
  return current;
}

export function t(key, vars = {}) {
  const text = catalogues[current][key] ?? catalogues.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}
