#!/bin/sh
# Sets MariaDB's root password from MYSQL_ROOT_PASSWORD on the first start
# (on a fresh /var/lib/mysql), optionally creates MYSQL_DATABASE, then runs the
# command (mariadbd by default) as the mysql user.
set -eu

DATADIR=/var/lib/mysql
MARKER=$DATADIR/.rbk-initialized

if [ "${1#-}" != "$1" ]; then
    set -- mariadbd "$@"
fi

if [ "$1" = mariadbd ] || [ "$1" = mysqld ]; then
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld "$DATADIR"
    if [ ! -d "$DATADIR/mysql" ]; then
        echo "entrypoint: creating the system tables in $DATADIR"
        mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db >/dev/null
    fi
    if [ ! -e "$MARKER" ]; then
        if [ -z "${MYSQL_ROOT_PASSWORD:-}" ]; then
            echo "entrypoint: error: the database is uninitialized; set MYSQL_ROOT_PASSWORD" >&2
            exit 1
        fi
        echo "entrypoint: setting the root password"
        mariadbd --user=mysql --datadir="$DATADIR" --skip-networking \
            --socket=/run/mysqld/init.sock &
        pid=$!
        i=0
        until mariadb --protocol=socket --socket=/run/mysqld/init.sock -uroot -e 'SELECT 1' >/dev/null 2>&1; do
            i=$((i + 1))
            if [ "$i" -ge 60 ]; then
                echo "entrypoint: error: the server did not start" >&2
                exit 1
            fi
            sleep 0.5
        done
        # Quote the password for SQL: double every single quote and backslash.
        pw=$(printf '%s' "$MYSQL_ROOT_PASSWORD" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/''/g")
        {
            echo "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('$pw');"
            echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '$pw';"
            echo "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
            if [ -n "${MYSQL_DATABASE:-}" ]; then
                echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
            fi
            echo "FLUSH PRIVILEGES;"
        } | mariadb --protocol=socket --socket=/run/mysqld/init.sock -uroot
        kill "$pid"
        wait "$pid" || true
        touch "$MARKER"
        chown mysql:mysql "$MARKER"
    fi
    exec "$@" --user=mysql
fi

exec "$@"
