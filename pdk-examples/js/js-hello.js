'use strict'
// js-hello: go-hello's logic with Kong's JavaScript PDK (kong-pdk on npm).
//
// During access it reads one request header (host, unless the configuration
// names another) and sets x-hello-from-javascript: "Javascript says
// <message> to <value>". With config.deny set, a request carrying the header
// x-deny is answered 403 through kong.response.exit instead.
//
// Served by kong-pdk's plugin server, which loads every plugin of a
// directory; the plugin name is the file name:
//
//   kong-js-pluginserver -d <this directory> --dump-all-plugins
//   kong-js-pluginserver -d <this directory> --kong-prefix /usr/local/sluice \
//       --sock-name js_pluginserver.sock

class KongPlugin {
  constructor (config) {
    this.config = config
  }

  async access (kong) {
    if (this.config.deny && await kong.request.getHeader('x-deny')) {
      return kong.response.exit(403, { message: 'denied by js-hello' },
        { 'X-Denied-By': 'js-hello' })
    }
    const name = this.config.header || 'host'
    const value = await kong.request.getHeader(name)
    const message = this.config.message || 'hello'
    await kong.response.setHeader('x-hello-from-javascript',
      `Javascript says ${message} to ${value || ''}`)
  }
}

module.exports = {
  Plugin: KongPlugin,
  Schema: [
    { message: { type: 'string' } },
    { header: { type: 'string' } },
    { deny: { type: 'boolean' } }
  ],
  Version: '0.1.0',
  Priority: 0
}
