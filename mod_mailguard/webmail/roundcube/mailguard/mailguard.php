<?php
/**
 * mailguard: tell mod_mailguard which failed logins were password checks.
 *
 * Roundcube answers 401 to every failed login, whatever went wrong, and
 * 200 when the login form was posted with _framed=1 or _remote=1.
 * mod_mailguard counts a POST answered 401 as a guessed password, so
 * without this plugin an IMAP outage, a forged cross-site POST or
 * Roundcube's own rate-limit lock count too, and a framed or remote
 * login is not counted at all.  This plugin makes the status code say
 * exactly what happened (Roundcube's login_failed hook knows):
 *
 *   401  the IMAP server rejected the user name or password
 *   503  the storage server could not be reached (Retry-After sent)
 *   429  Roundcube's login_rate_limit lock
 *   400  invalid request: missing or wrong token, no session, cookies
 *        disabled, a host the configuration does not allow
 *   403  any other 401 Roundcube would send (error pages, killcache),
 *        so that 401 is only ever a rejected password
 *
 * The status code is the only channel: no header is added, except
 * Retry-After on a 503.  Works under mod_php and PHP-FPM; Roundcube
 * 1.4.1 to 1.6.
 *
 * Options (config.inc.php):
 *   $config['mailguard_unavailable_is_outage'] = false;
 *       true: Dovecot's "NO [UNAVAILABLE]" (its password database is
 *       down) answers 503 as well.  Off by default: a password backend
 *       could be made to say it on purpose.
 *   $config['mailguard_retry_after'] = 30;   seconds, for the 503
 *
 * Enable: $config['plugins'][] = 'mailguard';
 */
class mailguard extends rcube_plugin
{
    /* Loaded for every task, with AJAX and framed requests included: a
     * login posted with _remote=1 or _framed=1 is still a login. */
    public $noajax = false;
    public $noframe = false;

    private $status = null;

    public function init()
    {
        $this->add_hook('login_failed', array($this, 'login_failed'));
        $this->add_hook('unauthenticated', array($this, 'unauthenticated'));
        // The final word on the status, whatever index.php or the output
        // class send after the hooks (a framed or remote login never
        // reaches the unauthenticated hook).
        header_register_callback(array($this, 'send_status'));
    }

    /**
     * The status for a failed login, from Roundcube's error code
     * (program/include/rcmail.php: ERROR_*; null when IMAP said NO).
     */
    private function status_for($code)
    {
        if ($code === null || $code === '' || $code === 0) {
            if ($this->unavailable()) {
                return 503;
            }
            return 401;
        }
        switch ((int) $code) {
        case rcmail::ERROR_STORAGE:
            return 503;
        case rcmail::ERROR_RATE_LIMIT:
            return 429;
        case rcmail::ERROR_INVALID_REQUEST:
        case rcmail::ERROR_COOKIES_DISABLED:
        case rcmail::ERROR_INVALID_HOST:
            return 400;
        }
        // A code another plugin made up: count it, as Roundcube's own
        // 401 would be.
        return 401;
    }

    /** Dovecot's NO [UNAVAILABLE], when the site opted in. */
    private function unavailable()
    {
        $rcmail = rcmail::get_instance();

        if (!$rcmail->config->get('mailguard_unavailable_is_outage', false)) {
            return false;
        }
        return !empty($rcmail->storage) && !empty($rcmail->storage->conn)
            && isset($rcmail->storage->conn->resultcode)
            && $rcmail->storage->conn->resultcode === 'UNAVAILABLE';
    }

    public function login_failed($args)
    {
        $this->status = $this->status_for(isset($args['code']) ? $args['code'] : null);
        $this->apply($this->status);
        return $args;
    }

    public function unauthenticated($args)
    {
        // index.php sends its own 401 when http_code is 401: ask for
        // nothing when our status is another one.
        if ($this->status !== null && $this->status != 401 && $args['http_code'] == 401) {
            $args['http_code'] = $this->status;
        }
        return $args;
    }

    public function send_status()
    {
        if ($this->status !== null) {
            $this->apply($this->status);
        }
        else if (http_response_code() == 401) {
            $this->apply(403);
        }
    }

    private function apply($code)
    {
        static $text = array(
            400 => 'Bad Request',
            401 => 'Unauthorized',
            403 => 'Forbidden',
            429 => 'Too Many Requests',
            503 => 'Service Unavailable',
        );

        if (headers_sent()) {
            return;
        }
        header('HTTP/1.0 ' . $code . ' ' . $text[$code], true, $code);
        if ($code == 503) {
            $after = (int) rcmail::get_instance()->config->get('mailguard_retry_after', 30);
            header('Retry-After: ' . max(1, $after));
        }
    }
}
