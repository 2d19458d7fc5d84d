// A dependency of node-hello, installed by npm in the build stage.
module.exports = (runtime) => `hello from StageX (node ${runtime})`;
