<?php
/**
 * mailguard: tell mod_mailguard which failed logins were password checks.
 *
 * SquirrelMail 1.4 answers 200 to every failed login from
 * src/redirect.php: a rejected password, an IMAP server that cannot be
 * reached, a request without credentials.  mod_mailguard counts that 200
 * as a guessed password, so without this plugin an IMAP outage bans the
 * users who retry.  This plugin moves what is not a password check out of
 * the counted status, before SquirrelMail prints anything:
 *
 *   200  the IMAP server rejected the user name or password (kept:
 *        SquirrelMail's own failure status, so the module counts the
 *        same way with or without the plugin and needs no setting)
 *   503  the IMAP server could not be reached or broke off the
 *        conversation (Retry-After sent)
 *   400  redirect.php called without a user name
 *
 * Only src/redirect.php is touched.  Enable it in config/config.php (or
 * with conf.pl): $plugins[] = 'mailguard';
 * Option, in config/config_local.php: $mailguard_retry_after = 30;
 */

function squirrelmail_plugin_init_mailguard()
{
    global $squirrelmail_plugin_hooks;

    $squirrelmail_plugin_hooks['logout_error']['mailguard'] = 'mailguard_logout_error';
    $squirrelmail_plugin_hooks['error_box']['mailguard'] = 'mailguard_error_box';
}

function mailguard_version()
{
    return '1.0';
}

/* The login script only: error pages elsewhere keep their status. */
function mailguard_on_login_page()
{
    return defined('PAGE_NAME') && PAGE_NAME == 'redirect';
}

function mailguard_status($code)
{
    global $mailguard_retry_after;
    static $text = array(400 => 'Bad Request', 503 => 'Service Unavailable');

    if (headers_sent()) {
        return;
    }
    header('HTTP/1.0 ' . $code . ' ' . $text[$code], true, $code);
    if ($code == 503) {
        $after = isset($mailguard_retry_after) ? (int) $mailguard_retry_after : 30;
        header('Retry-After: ' . max(1, $after));
    }
}

/* Does $message start like SquirrelMail's own (translated) $format, up
 * to its first %s? */
function mailguard_starts_like($message, $format)
{
    $cut = strpos($format, '%s');
    $prefix = $cut === false ? $format : substr($format, 0, $cut);

    return $prefix !== '' && strncmp($message, $prefix, strlen($prefix)) == 0;
}

/* do_hook('logout_error', $errString, $errTitle, $logout_link): the
 * arguments arrive as one array, the hook name first. */
function mailguard_logout_error($args)
{
    $message = isset($args[1]) ? (string) $args[1] : '';

    if (!mailguard_on_login_page()) {
        return;
    }
    // functions/imap_general.php, sqimap_create_stream(): the connection
    // was refused or timed out.
    if (mailguard_starts_like($message, _("Error connecting to IMAP server: %s."))) {
        mailguard_status(503);
    }
    // src/redirect.php without login_username.
    else if ($message == _("You must be logged in to access this page.")) {
        mailguard_status(400);
    }
    // Anything else is sqimap_login()'s answer to a NO: a password check.
}

/* concat_hook_function('error_box', $string): sqimap_error_box() when
 * STARTTLS or the server's greeting fails, and sqimap_login() on a BAD or
 * an unexpected answer: the server, not the password. */
function mailguard_error_box($string)
{
    if (mailguard_on_login_page()) {
        mailguard_status(503);
    }
    return '';
}
