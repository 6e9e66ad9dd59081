// Shim for danfojs-node: one tfjs engine for the whole process (see README, "danfojs").
module.exports = require("@tensorflow/tfjs");
