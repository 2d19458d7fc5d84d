// node-hello prints a greeting made by its dependency: enough to show that
// node_modules installed in the build stage runs on base-nodejs.
const greeting = require("greeting");

console.log(greeting(process.version));
